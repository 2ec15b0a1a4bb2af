//! Differential privacy of published models (issue 12, first part): the accountant, site-level
//! clipping and distributed discrete Gaussian noise. Wiring into rounds, budgets and manifests
//! comes next; see docs/privacy.md.

pub mod accountant;
pub mod noise;

pub use accountant::{RdpAccountant, noise_multiplier_for, sampled_gaussian_rdp};
pub use noise::{NoiseShares, clip_l2, discrete_gaussian, headroom_units, round_noise};
