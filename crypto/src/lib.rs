//! Protection of model updates: the coordinator learns only the aggregate.
//!
//! - [`fixed_point`]: f32 updates <-> words modulo 2^32 that add without wrapping (shared by
//!   both protection modes).
//! - [`secagg`]: dropout-tolerant secure aggregation by pairwise and self masks (SecAgg+).
//! - `he` (feature `he`): packed RLWE encryption under a collective key.
//! - [`dp`]: differential privacy of the aggregate: RDP accountant, clipping, distributed
//!   discrete Gaussian noise.

pub mod dp;
mod error;
pub mod fixed_point;
pub mod secagg;

pub use error::{AbortReason, CryptoError};
pub use fixed_point::{FixedPointCodec, WeightedMean};

#[cfg(feature = "he")]
pub mod he;
