//! Site metadata: the sidecar file `sites.json` next to the telemetry.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DatasetError;

/// File name of the metadata sidecar in a fleet directory.
pub const METADATA_FILE: &str = "sites.json";

/// What kind of DER installation a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// A metered building with no generation.
    Building,
    /// A building with rooftop PV (load and PV metered separately).
    Prosumer,
    /// A stand-alone PV plant.
    PvPlant,
}

impl SiteKind {
    pub fn has_load(self) -> bool {
        matches!(self, SiteKind::Building | SiteKind::Prosumer)
    }
    pub fn has_pv(self) -> bool {
        matches!(self, SiteKind::Prosumer | SiteKind::PvPlant)
    }
}

/// Market sector of a site; load shapes and federations are organised by sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    Residential,
    Commercial,
    Industrial,
}

impl Sector {
    pub const ALL: [Sector; 3] = [Sector::Residential, Sector::Commercial, Sector::Industrial];
    pub fn as_str(self) -> &'static str {
        match self {
            Sector::Residential => "residential",
            Sector::Commercial => "commercial",
            Sector::Industrial => "industrial",
        }
    }
}

/// Static description of one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteMetadata {
    pub site_id: String,
    pub kind: SiteKind,
    pub sector: Sector,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// PV nameplate capacity (DC) in kW; 0 for sites without PV.
    pub capacity_kw: f64,
    /// IANA time zone (e.g. `Europe/Berlin`); calendar features use local time.
    pub timezone: String,
    /// PV array tilt from horizontal, degrees (optional; 0 if unknown).
    #[serde(default)]
    pub pv_tilt_deg: f64,
    /// PV array azimuth, degrees clockwise from north (180 = south; optional).
    #[serde(default = "default_azimuth")]
    pub pv_azimuth_deg: f64,
    /// Grid connection limits of a net-metered site, kW: the most it may import and export.
    /// They bound `net_load_kw` (see `schema::NET_LOAD_LIMIT_TOLERANCE`); absent, only
    /// finiteness is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_limit_kw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_limit_kw: Option<f64>,
}

fn default_azimuth() -> f64 {
    180.0
}

impl SiteMetadata {
    /// Checks ranges and the time zone name; `path` only labels errors.
    pub fn validate(&self, path: &Path) -> Result<(), DatasetError> {
        let bad = |reason: String| DatasetError::Metadata {
            path: path.to_path_buf(),
            reason: format!("site `{}`: {reason}", self.site_id),
        };
        if self.site_id.is_empty() {
            return Err(bad("empty site_id".into()));
        }
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(bad(format!("latitude {} outside [-90, 90]", self.latitude)));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(bad(format!(
                "longitude {} outside [-180, 180]",
                self.longitude
            )));
        }
        if !self.capacity_kw.is_finite() || self.capacity_kw < 0.0 {
            return Err(bad(format!(
                "capacity_kw {} must be finite and >= 0",
                self.capacity_kw
            )));
        }
        if self.kind.has_pv() && self.capacity_kw <= 0.0 {
            return Err(bad("a site with PV needs capacity_kw > 0".into()));
        }
        for (name, limit) in [
            ("import_limit_kw", self.import_limit_kw),
            ("export_limit_kw", self.export_limit_kw),
        ] {
            if let Some(limit) = limit
                && !(limit.is_finite() && limit >= 0.0)
            {
                return Err(bad(format!("{name} {limit} must be finite and >= 0")));
            }
        }
        if self.tz().is_none() {
            return Err(bad(format!(
                "unknown time zone `{}` (use an IANA name)",
                self.timezone
            )));
        }
        Ok(())
    }

    /// The parsed time zone (None if the name is unknown).
    pub fn tz(&self) -> Option<chrono_tz::Tz> {
        self.timezone.parse().ok()
    }
}

/// Reads and validates `sites.json` (a JSON array of [`SiteMetadata`]).
pub fn read_metadata(path: &Path) -> Result<Vec<SiteMetadata>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let sites: Vec<SiteMetadata> =
        serde_json::from_str(&text).map_err(|e| DatasetError::Metadata {
            path: path.to_path_buf(),
            reason: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
    let mut seen = std::collections::HashSet::new();
    for site in &sites {
        site.validate(path)?;
        if !seen.insert(site.site_id.as_str()) {
            return Err(DatasetError::Metadata {
                path: path.to_path_buf(),
                reason: format!("duplicate site_id `{}`", site.site_id),
            });
        }
    }
    Ok(sites)
}

/// Writes `sites.json`.
pub fn write_metadata(path: &Path, sites: &[SiteMetadata]) -> Result<(), DatasetError> {
    let text = serde_json::to_string_pretty(sites).map_err(|e| DatasetError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text).map_err(|e| DatasetError::io(path, e))
}
