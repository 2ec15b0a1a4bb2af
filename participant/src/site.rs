//! Loading the site's own telemetry into training samples. Everything here stays on the site.

use datasets::prepare::{prepare_site, unusable_reason};
use datasets::{
    PreparedSite, RegularSeries, Resolution, SiteMetadata, SplitSpec, Target, grid_site,
};

use crate::ParticipantError;
use crate::config::DataConfig;

/// Reads `config.dir`, validates it, and returns this site's metadata and telemetry on the
/// `resolution` grid.
pub fn load_series(
    config: &DataConfig,
    resolution: Resolution,
) -> Result<(SiteMetadata, RegularSeries), ParticipantError> {
    let fleet = datasets::reader::read_fleet_dir(&config.dir)?;
    let index = fleet
        .sites
        .iter()
        .position(|s| s.site_id == config.site_id)
        .ok_or_else(|| {
            ParticipantError::Config(format!(
                "site `{}` is not in {}",
                config.site_id,
                config.dir.display()
            ))
        })?;
    let validated = &fleet.telemetry[index];
    let site = fleet.sites[index].clone();
    let series = grid_site(
        &validated.telemetry,
        validated.resolution,
        resolution,
        &site,
    )?
    .series;
    Ok((site, series))
}

/// Reads `config.dir`, validates it, and prepares this site's train/test samples.
pub fn load_site(config: &DataConfig) -> Result<PreparedSite, ParticipantError> {
    let target: Target = config.target()?;
    let resolution: Resolution = config
        .resolution
        .parse()
        .map_err(|e: String| ParticipantError::Config(format!("data.resolution: {e}")))?;
    let (site, series) = load_series(config, resolution)?;
    let mut split = SplitSpec::day_ahead(resolution.steps_per_day());
    split.test_fraction = config.test_fraction;
    if let Some(c) = config.context {
        split.context = c;
    }
    if let Some(h) = config.horizon {
        split.horizon = h;
    }
    let prepared = prepare_site(&series, &site, target, split)?.ok_or_else(|| {
        ParticipantError::Config(format!(
            "site `{}` does not measure {}",
            config.site_id, config.target
        ))
    })?;
    // Without a training window the site has nothing to contribute; say why before joining
    // rather than failing every round. (No test window only makes it abstain from scoring.)
    if prepared.train.is_empty() {
        let reason = unusable_reason(&prepared, split).unwrap_or_default();
        return Err(ParticipantError::Config(format!(
            "site `{}` cannot train {}: {reason}",
            config.site_id, config.target
        )));
    }
    Ok(prepared)
}

impl DataConfig {
    pub(crate) fn target(&self) -> Result<Target, ParticipantError> {
        self.target
            .parse()
            .map_err(|e: String| ParticipantError::Config(format!("data.target: {e}")))
    }
}
