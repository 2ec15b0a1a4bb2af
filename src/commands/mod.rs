//! One module per subcommand.

pub mod datasets;
pub mod demo;
pub mod fleet;
pub mod report;
pub mod train;
