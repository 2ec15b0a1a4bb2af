//! Loading a fleet (from disk or the synthetic generator) onto one regular grid.

use std::path::Path;

use anyhow::{Context, Result};
use datasets::synth::Fleet;
use datasets::{RegularSeries, Resolution, SiteMetadata, grid_site};

/// Sites and their telemetry on a common regular grid, in the same order.
pub struct GriddedFleet {
    pub sites: Vec<SiteMetadata>,
    pub series: Vec<RegularSeries>,
    pub resolution: Resolution,
}

/// Reads and validates a fleet directory and grids every site to `resolution` (night PV gaps
/// filled with zeros, see `datasets::night`).
pub fn load_dir(dir: &Path, resolution: Resolution) -> Result<GriddedFleet> {
    let data = datasets::reader::read_fleet_dir(dir)
        .with_context(|| format!("reading fleet directory {}", dir.display()))?;
    let series = data
        .telemetry
        .iter()
        .zip(&data.sites)
        .map(|(v, meta)| Ok(grid_site(&v.telemetry, v.resolution, resolution, meta)?.series))
        .collect::<Result<Vec<_>>>()?;
    Ok(GriddedFleet {
        sites: data.sites,
        series,
        resolution,
    })
}

/// A freshly generated synthetic fleet, already regular at its own resolution.
pub fn from_synthetic(fleet: Fleet) -> GriddedFleet {
    GriddedFleet {
        series: fleet.regular_series(),
        resolution: fleet.resolution,
        sites: fleet.sites,
    }
}
