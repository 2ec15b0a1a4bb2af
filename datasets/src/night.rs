//! PV output at night is a known zero, not a missing value.
//!
//! Many inverters log only while they produce, so an operator's export has no PV rows between
//! dusk and dawn. Left missing, every day-ahead window of such a site touches a gap and the
//! site can be neither trained nor scored. A step during which the sun stays below the horizon
//! (at its start, middle and end: [`crate::solar::is_daylight`] is false) cannot produce, so its
//! missing PV value is filled with 0 kW. Daytime gaps stay missing: nothing is guessed there.

use crate::solar::is_daylight;
use crate::{RegularSeries, Resolution, SiteMetadata, SiteTelemetry};

/// Fills the missing PV values of `series` at steps where the sun is below the horizon with
/// 0 kW and returns how many steps it filled. A series without a `pv_kw` column is untouched.
pub fn fill_pv_night_gaps(series: &mut RegularSeries, meta: &SiteMetadata) -> usize {
    let step_s = series.resolution.seconds();
    let t = &mut series.telemetry;
    let Some(pv) = t.pv_kw.as_mut() else {
        return 0;
    };
    let mut filled = 0;
    for (value, &ts) in pv.iter_mut().zip(&t.timestamps) {
        if value.is_none() && !is_daylight(meta.latitude, meta.longitude, ts, step_s) {
            *value = Some(0.0);
            filled += 1;
        }
    }
    filled
}

/// One site's telemetry on the `resolution` grid, with night PV gaps filled.
#[derive(Clone, Debug)]
pub struct GriddedSite {
    pub series: RegularSeries,
    /// PV steps filled with 0 kW because the sun was down (see [`fill_pv_night_gaps`]).
    pub pv_night_zeros: usize,
}

/// Puts validated telemetry recorded at `native` resolution on the `resolution` grid
/// ([`RegularSeries::resample`]) and fills night PV gaps. Every path from telemetry to samples
/// (training, federation, serving) goes through here, so they agree on what is a known zero.
///
/// Night filling happens on the native grid, before averaging: a coarse step that is partly
/// daylight keeps a daytime gap missing.
pub fn grid_site(
    telemetry: &SiteTelemetry,
    native: Resolution,
    resolution: Resolution,
    meta: &SiteMetadata,
) -> Result<GriddedSite, crate::DatasetError> {
    let mut native_series = RegularSeries::resample(telemetry, native, native)?;
    let pv_night_zeros = fill_pv_night_gaps(&mut native_series, meta);
    let series = if resolution == native {
        native_series
    } else {
        RegularSeries::resample(&native_series.telemetry, native, resolution)?
    };
    Ok(GriddedSite {
        series,
        pv_night_zeros,
    })
}
