//! A synthetic DER fleet: physically grounded, heterogeneous and deterministic per seed.
//!
//! Sites sit in four European climate regions. Each region has one weather process
//! (temperature, cloud cover, a day-ahead forecast of both), and each site adds its own local
//! clouds and temperature. PV power follows the sun's position for the site, clear-sky
//! irradiance, cloud attenuation, the array's tilt and azimuth, temperature derating, inverter
//! losses and clipping. Loads follow sector-specific daily and weekly shapes, holidays, heating
//! and cooling, and noise. Sizes, orientations, climates and habits differ from site to site,
//! so pooling data across sites helps, and a model fitted to one short history struggles.
//!
//! Determinism: every region and every site draws from its own ChaCha stream of the seed, so
//! the fleet does not depend on thread scheduling, a site does not depend on how many sites
//! follow it, and a shorter fleet is a prefix of a longer one with the same seed and start.
//! The `clean` profile injects no data defects: every value is present and within schema
//! bounds. The `realistic` profile ([`Profile::Realistic`]) degrades the same sites into what
//! operators' exports look like: appliance-driven homes, no weather, daylight-only inverters,
//! outages.

mod household;
mod load;
mod pv;
mod realistic;
mod site;
mod weather;

pub use realistic::Profile;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{RegularSeries, Resolution, Sector, SiteKind, SiteMetadata, SiteTelemetry};
use site::{Grid, SitePlan};
use weather::{CLIMATES, RegionalWeather};

/// 2024-01-01T00:00:00Z.
const DEFAULT_START_UNIX_S: i64 = 1_704_067_200;

/// Stream numbers of the seed's ChaCha generator: regions and sites never share one.
const REGION_STREAM_BASE: u64 = 1 << 32;
const SITE_STREAM_BASE: u64 = 2 << 32;
/// The realistic profile's draws come from their own streams, so a realistic site is its clean
/// twin degraded, with the same weather and PV system.
const REALISTIC_STREAM_BASE: u64 = 3 << 32;

/// The mix of site types and climate regions (indices into the climate table: Berlin,
/// Madrid, Stockholm, Rome), repeated every 20 sites with the regions rotated by one per
/// repetition: 40 % residential prosumers, then residential buildings, commercial buildings
/// and prosumers, industrial buildings and PV plants, five sites per region. PV plants are
/// filed under the commercial sector (their operators are businesses).
const SITE_MIX: [(SiteKind, Sector, usize); 20] = [
    (SiteKind::Prosumer, Sector::Residential, 0),
    (SiteKind::Building, Sector::Commercial, 0),
    (SiteKind::Prosumer, Sector::Residential, 1),
    (SiteKind::Building, Sector::Residential, 2),
    (SiteKind::PvPlant, Sector::Commercial, 1),
    (SiteKind::Prosumer, Sector::Residential, 2),
    (SiteKind::Prosumer, Sector::Commercial, 3),
    (SiteKind::Building, Sector::Industrial, 0),
    (SiteKind::Prosumer, Sector::Residential, 3),
    (SiteKind::Building, Sector::Commercial, 2),
    (SiteKind::Prosumer, Sector::Residential, 1),
    (SiteKind::Building, Sector::Residential, 3),
    (SiteKind::Prosumer, Sector::Residential, 0),
    (SiteKind::PvPlant, Sector::Commercial, 0),
    (SiteKind::Prosumer, Sector::Commercial, 2),
    (SiteKind::Building, Sector::Industrial, 1),
    (SiteKind::Prosumer, Sector::Residential, 3),
    (SiteKind::Building, Sector::Residential, 1),
    (SiteKind::Building, Sector::Commercial, 3),
    (SiteKind::Prosumer, Sector::Residential, 2),
];

/// What fleet to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    pub sites: usize,
    pub days: usize,
    pub resolution: Resolution,
    pub seed: u64,
    /// First time step, UTC unix seconds; rounded down to a multiple of the resolution so
    /// steps land on clock boundaries.
    pub start_unix_s: i64,
    pub profile: Profile,
}

impl Default for FleetConfig {
    /// 20 sites, 365 days, hourly, seed 7, starting 2024-01-01T00:00:00Z.
    fn default() -> Self {
        Self {
            sites: 20,
            days: 365,
            resolution: Resolution::Hour,
            seed: 7,
            start_unix_s: DEFAULT_START_UNIX_S,
            profile: Profile::Clean,
        }
    }
}

/// A generated fleet: `sites[i]` describes `telemetry[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub sites: Vec<SiteMetadata>,
    pub telemetry: Vec<SiteTelemetry>,
    /// The grid every site's telemetry was generated on (complete in the clean profile; the
    /// realistic one leaves rows out).
    pub resolution: Resolution,
}

impl Fleet {
    /// Each site's telemetry as a [`RegularSeries`], in site order, exactly as a fleet
    /// directory would be gridded ([`crate::grid_site`]: night PV gaps filled with zeros).
    pub fn regular_series(&self) -> Vec<RegularSeries> {
        self.telemetry
            .iter()
            .zip(&self.sites)
            .map(|(t, meta)| {
                crate::grid_site(t, self.resolution, self.resolution, meta)
                    .map(|gridded| gridded.series)
                    // Same-resolution gridding of generated data cannot fail; labelling the
                    // telemetry as it is keeps this total.
                    .unwrap_or_else(|_| RegularSeries {
                        resolution: self.resolution,
                        telemetry: t.clone(),
                    })
            })
            .collect()
    }
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Generates the fleet described by `cfg` (sites in parallel; the result depends only on
/// `cfg`). Site ids are `site-000`, `site-001`, ...
pub fn generate_fleet(cfg: &FleetConfig) -> Fleet {
    let step_s = cfg.resolution.seconds();
    let grid = Grid {
        start_unix_s: cfg.start_unix_s.div_euclid(step_s) * step_s,
        step_s,
        steps: cfg.days * cfg.resolution.steps_per_day(),
    };
    // All regions are simulated (cheap) so a site's weather never depends on the fleet size.
    let regions: Vec<RegionalWeather> = (0..CLIMATES.len())
        .into_par_iter()
        .map(|r| {
            let mut rng = stream(cfg.seed, REGION_STREAM_BASE + r as u64);
            RegionalWeather::simulate(CLIMATES[r], grid.steps, step_s, &mut rng)
        })
        .collect();
    let (sites, telemetry) = (0..cfg.sites)
        .into_par_iter()
        .map(|index| {
            let (kind, sector, region) = SITE_MIX[index % SITE_MIX.len()];
            let region = (region + index / SITE_MIX.len()) % CLIMATES.len();
            let mut rng = stream(cfg.seed, SITE_STREAM_BASE + index as u64);
            let plan = SitePlan {
                index,
                kind,
                sector,
            };
            let (mut meta, mut telemetry) =
                site::simulate_site(plan, &regions[region], grid, &mut rng);
            if cfg.profile == Profile::Realistic {
                let mut rng = stream(cfg.seed, REALISTIC_STREAM_BASE + index as u64);
                realistic::degrade(&mut meta, &mut telemetry, grid, &mut rng);
            }
            (meta, telemetry)
        })
        .unzip();
    Fleet {
        sites,
        telemetry,
        resolution: cfg.resolution,
    }
}
