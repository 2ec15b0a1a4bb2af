//! DER telemetry in, supervised forecasting samples out.
//!
//! The data layer of gridfed. It reads a site's telemetry from Parquet (long format, one row
//! per site and time step), validates it (every error names the file, column and row),
//! reports its quality, puts it on a regular grid without filling gaps, derives calendar and
//! solar features and cuts it into supervised windows for the forecasters in `models`.
//! It also generates physically grounded synthetic DER fleets for demos, tests and benchmarks.
//!
//! Everything here is synchronous and free of networking: values in, values out.

pub mod calendar;
pub mod error;
pub mod export;
pub mod features;
pub mod grid;
pub mod import;
pub mod metadata;
pub mod night;
pub mod prepare;
pub mod quality;
pub mod reader;
pub mod schema;
pub mod solar;
pub mod synth;
pub mod telemetry;
pub mod window;
pub mod writer;

pub use error::DatasetError;
pub use grid::{RegularSeries, Resolution};
pub use metadata::{Sector, SiteKind, SiteMetadata};
pub use night::{GriddedSite, grid_site};
pub use prepare::{PreparedFleet, PreparedSite, SkippedSite, SplitSpec, prepare_fleet};
pub use telemetry::SiteTelemetry;
pub use window::{Normalization, SampleSet, Target, WindowSpec};
