//! Solar geometry and clear-sky irradiance: where the sun is, how much light reaches the ground
//! on a clear day, and how much of it lands on a tilted PV array.
//!
//! Conventions: latitude degrees north, longitude degrees east, time a UTC unix timestamp in
//! seconds, azimuths degrees clockwise from north (180 = south), irradiance W/m².
//!
//! Sun position follows the NOAA "general solar position" equations (Spencer's Fourier series
//! for declination and equation of time; about 0.05° and 30 s accurate, plenty for hourly PV).
//! Clear-sky GHI is the Haurwitz model, the beam/diffuse split is Erbs, and plane-of-array
//! irradiance uses the isotropic-sky transposition. All functions are pure and cheap: the
//! windowing code calls them once per grid step.

use std::f64::consts::PI;

/// Solar constant at mean sun-earth distance, W/m² (Kopp & Lean 2011).
pub const SOLAR_CONSTANT_W_M2: f64 = 1361.0;

/// Zenith angle of sunrise and sunset: 90° plus 0.833° for atmospheric refraction and the
/// sun's radius, so "up" means the upper limb is visible, as in published sunrise tables.
pub const SUNRISE_ZENITH_DEG: f64 = 90.833;

/// Ground reflectance used when none is given (grass, roofs).
pub const DEFAULT_ALBEDO: f64 = 0.2;

/// Below this cosine of the zenith (sun within ~3° of the horizon) the beam share is not
/// resolved: the Erbs decomposition divides by cos(zenith) and would amplify rounding.
const MIN_COS_ZENITH_FOR_BEAM: f64 = 0.05;

/// Where the sun is, seen from a point on the ground (geometric, no refraction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SunPosition {
    /// Angle from the vertical, degrees in [0, 180].
    pub zenith_deg: f64,
    /// Degrees clockwise from north in [0, 360): 90 east, 180 south, 270 west.
    pub azimuth_deg: f64,
    /// Angle above the horizon, degrees: `90 - zenith_deg`.
    pub elevation_deg: f64,
}

impl SunPosition {
    pub fn cos_zenith(&self) -> f64 {
        self.zenith_deg.to_radians().cos()
    }
}

/// Irradiance components on the horizontal, W/m².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IrradianceSplit {
    /// Global horizontal irradiance.
    pub ghi_w_m2: f64,
    /// Direct normal irradiance (beam, on a surface facing the sun).
    pub dni_w_m2: f64,
    /// Diffuse horizontal irradiance.
    pub dhi_w_m2: f64,
}

/// Orientation of a flat PV array.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayOrientation {
    /// Tilt from horizontal, degrees (0 flat, 90 vertical).
    pub tilt_deg: f64,
    /// Direction the array faces, degrees clockwise from north (180 = south).
    pub azimuth_deg: f64,
}

/// Day of the year (0-based) and the number of days in that year, for a day count since
/// 1970-01-01 (proleptic Gregorian; Howard Hinnant's civil-from-days algorithm, no chrono,
/// no failure for any i64 input that fits).
fn year_day(days_since_epoch: i64) -> (i64, i64) {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_from_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let month_index = (5 * doy_from_march + 2) / 153;
    // January and February belong to the next civil year in this March-based count.
    let year = yoe + era * 400 + i64::from(month_index >= 10);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_year = if leap { 366 } else { 365 };
    let jan_feb = if leap { 60 } else { 59 };
    let ordinal0 = if month_index >= 10 {
        doy_from_march - 306
    } else {
        doy_from_march + jan_feb
    };
    (ordinal0, days_in_year)
}

/// Spencer's fractional year in radians at `unix_s`.
fn fractional_year_rad(unix_s: i64) -> f64 {
    let days = unix_s.div_euclid(86_400);
    let seconds_of_day = unix_s.rem_euclid(86_400) as f64;
    let (ordinal0, days_in_year) = year_day(days);
    2.0 * PI / days_in_year as f64 * (ordinal0 as f64 + (seconds_of_day / 3600.0 - 12.0) / 24.0)
}

/// Extraterrestrial irradiance on a surface normal to the sun, W/m², corrected for the
/// eccentricity of the earth's orbit (±3.4 % over the year).
pub fn extraterrestrial_normal_w_m2(unix_s: i64) -> f64 {
    let g = fractional_year_rad(unix_s);
    let eccentricity = 1.000_110
        + 0.034_221 * g.cos()
        + 0.001_280 * g.sin()
        + 0.000_719 * (2.0 * g).cos()
        + 0.000_077 * (2.0 * g).sin();
    SOLAR_CONSTANT_W_M2 * eccentricity
}

/// Position of the sun at `unix_s` seen from (`lat_deg` north, `lon_deg` east).
pub fn sun_position(lat_deg: f64, lon_deg: f64, unix_s: i64) -> SunPosition {
    let g = fractional_year_rad(unix_s);
    let (s1, c1) = g.sin_cos();
    let (s2, c2) = (2.0 * g).sin_cos();
    let (s3, c3) = (3.0 * g).sin_cos();
    let equation_of_time_min =
        229.18 * (0.000_075 + 0.001_868 * c1 - 0.032_077 * s1 - 0.014_615 * c2 - 0.040_849 * s2);
    let declination = 0.006_918 - 0.399_912 * c1 + 0.070_257 * s1 - 0.006_758 * c2 + 0.000_907 * s2
        - 0.002_697 * c3
        + 0.001_480 * s3;
    // True solar time in minutes: UTC clock time shifted by longitude (4 min per degree).
    let utc_minutes = unix_s.rem_euclid(86_400) as f64 / 60.0;
    let true_solar_min = utc_minutes + equation_of_time_min + 4.0 * lon_deg;
    let hour_angle = (true_solar_min / 4.0 - 180.0).to_radians();

    let lat = lat_deg.to_radians();
    let (sin_lat, cos_lat) = lat.sin_cos();
    let (sin_dec, cos_dec) = declination.sin_cos();
    let (sin_ha, cos_ha) = hour_angle.sin_cos();
    let cos_zenith = (sin_lat * sin_dec + cos_lat * cos_dec * cos_ha).clamp(-1.0, 1.0);
    let zenith_deg = cos_zenith.acos().to_degrees();
    // Azimuth measured from south, westward positive, then turned to "clockwise from north".
    let from_south = sin_ha.atan2(cos_ha * sin_lat - sin_dec / cos_dec * cos_lat);
    let azimuth_deg = (from_south.to_degrees() + 180.0).rem_euclid(360.0);
    SunPosition {
        zenith_deg,
        azimuth_deg,
        elevation_deg: 90.0 - zenith_deg,
    }
}

/// Haurwitz clear-sky GHI for a given solar zenith, W/m² (0 with the sun below the horizon).
pub fn haurwitz_ghi_w_m2(zenith_deg: f64) -> f64 {
    let cos_z = zenith_deg.to_radians().cos();
    if cos_z <= 0.0 {
        return 0.0;
    }
    1098.0 * cos_z * (-0.059 / cos_z).exp()
}

/// Clear-sky global horizontal irradiance at `unix_s`, W/m² (Haurwitz; 0 at night).
pub fn clear_sky_ghi_w_m2(lat_deg: f64, lon_deg: f64, unix_s: i64) -> f64 {
    haurwitz_ghi_w_m2(sun_position(lat_deg, lon_deg, unix_s).zenith_deg)
}

/// Whether the sun is up (zenith below [`SUNRISE_ZENITH_DEG`]) at the start, middle or end of
/// the step `[unix_s, unix_s + step_seconds]`. Three probes suffice for steps of up to an hour
/// or so: the sun cannot rise and set again between them outside polar twilight.
pub fn is_daylight(lat_deg: f64, lon_deg: f64, unix_s: i64, step_seconds: i64) -> bool {
    let step = step_seconds.max(0);
    [
        unix_s,
        unix_s.saturating_add(step / 2),
        unix_s.saturating_add(step),
    ]
    .into_iter()
    .any(|t| sun_position(lat_deg, lon_deg, t).zenith_deg < SUNRISE_ZENITH_DEG)
}

/// Erbs decomposition of a measured or modelled GHI into beam (DNI) and diffuse (DHI) parts,
/// from the clearness index (GHI over extraterrestrial horizontal irradiance).
pub fn erbs_split(ghi_w_m2: f64, sun: &SunPosition, unix_s: i64) -> IrradianceSplit {
    let ghi = ghi_w_m2.max(0.0);
    let cos_z = sun.cos_zenith();
    if ghi == 0.0 || cos_z < MIN_COS_ZENITH_FOR_BEAM {
        return IrradianceSplit {
            ghi_w_m2: ghi,
            dni_w_m2: 0.0,
            dhi_w_m2: ghi,
        };
    }
    let extraterrestrial = extraterrestrial_normal_w_m2(unix_s);
    let clearness = (ghi / (extraterrestrial * cos_z)).clamp(0.0, 1.0);
    let diffuse_fraction = if clearness <= 0.22 {
        1.0 - 0.09 * clearness
    } else if clearness <= 0.8 {
        let k = clearness;
        0.9511 - 0.1604 * k + 4.388 * k * k - 16.638 * k.powi(3) + 12.336 * k.powi(4)
    } else {
        0.165
    };
    let dhi = ghi * diffuse_fraction;
    let dni = ((ghi - dhi) / cos_z).min(extraterrestrial);
    IrradianceSplit {
        ghi_w_m2: ghi,
        dni_w_m2: dni,
        dhi_w_m2: dhi,
    }
}

/// Cosine of the angle of incidence of the sun's beam on the array (negative: sun behind it).
pub fn cos_incidence(sun: &SunPosition, array: &ArrayOrientation) -> f64 {
    let (sin_z, cos_z) = sun.zenith_deg.to_radians().sin_cos();
    let (sin_t, cos_t) = array.tilt_deg.to_radians().sin_cos();
    let azimuth_gap = (sun.azimuth_deg - array.azimuth_deg).to_radians();
    cos_z * cos_t + sin_z * sin_t * azimuth_gap.cos()
}

/// Irradiance on the plane of the array, W/m²: beam on the tilted plane, isotropic sky
/// diffuse seen by the tilted plane, and ground-reflected light with `albedo`.
pub fn plane_of_array_w_m2(
    split: &IrradianceSplit,
    sun: &SunPosition,
    array: &ArrayOrientation,
    albedo: f64,
) -> f64 {
    let cos_t = array.tilt_deg.to_radians().cos();
    let beam = split.dni_w_m2 * cos_incidence(sun, array).max(0.0);
    let sky = split.dhi_w_m2 * (1.0 + cos_t) / 2.0;
    let ground = split.ghi_w_m2 * albedo * (1.0 - cos_t) / 2.0;
    (beam + sky + ground).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time (test helper).
    fn utc(y: i32, m: u32, d: u32, hh: u32, mm: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(hh, mm, 0))
            .expect("valid test date")
            .and_utc()
            .timestamp()
    }

    /// First minute of the day (from `from_unix_s`) at which the sun's state flips.
    fn next_crossing(lat: f64, lon: f64, from_unix_s: i64, rising: bool) -> i64 {
        (0..24 * 60)
            .map(|m| from_unix_s + m * 60)
            .find(|&t| (sun_position(lat, lon, t).zenith_deg < SUNRISE_ZENITH_DEG) == rising)
            .expect("crossing within a day")
    }

    #[test]
    fn year_day_matches_chrono() {
        for days in [
            -800_000i64,
            -1,
            0,
            59,
            365,
            10_956,
            19_782,
            19_812,
            2_000_000,
        ] {
            let date = chrono::DateTime::from_timestamp(days * 86_400, 0)
                .unwrap()
                .date_naive();
            let (ordinal0, len) = year_day(days);
            use chrono::Datelike;
            assert_eq!(ordinal0, i64::from(date.ordinal0()), "days {days}");
            assert_eq!(len, if date.leap_year() { 366 } else { 365 }, "days {days}");
        }
    }

    #[test]
    fn noon_elevation_at_equinox_is_colatitude() {
        for lat in [0.0, 23.0, 40.4, 52.5, 59.3, -33.9] {
            // Highest sun on 2024-03-20 at longitude 0: scan the day by minute.
            let day = utc(2024, 3, 20, 0, 0);
            let max_elevation = (0..1440)
                .map(|m| sun_position(lat, 0.0, day + m * 60).elevation_deg)
                .fold(f64::MIN, f64::max);
            let expected = 90.0 - f64::abs(lat);
            assert!(
                (max_elevation - expected).abs() < 0.5,
                "lat {lat}: {max_elevation} vs {expected}"
            );
        }
    }

    #[test]
    fn noon_sun_is_south_in_the_north_and_north_in_the_south() {
        // Solar noon at Greenwich in June is a minute or two before 12:00 UTC.
        let t = utc(2024, 6, 21, 11, 58);
        let north = sun_position(51.48, 0.0, t);
        let south = sun_position(-33.9, 0.0, t);
        assert!((north.azimuth_deg - 180.0).abs() < 2.0, "{north:?}");
        assert!(
            south.azimuth_deg < 2.0 || south.azimuth_deg > 358.0,
            "{south:?}"
        );
        let morning = sun_position(51.48, 0.0, utc(2024, 6, 21, 6, 0));
        assert!((60.0..110.0).contains(&morning.azimuth_deg), "{morning:?}");
    }

    #[test]
    fn sunrise_and_sunset_match_published_tables() {
        // (lat, lon, UTC midnight of the day, sunrise UTC h:m, sunset UTC h:m), from
        // timeanddate.com: Berlin 2024-06-21 04:43/21:33 CEST, London 2024-06-21
        // 04:43/21:21 BST and 2024-12-21 08:04/15:53 GMT.
        let cases = [
            (52.52, 13.405, utc(2024, 6, 21, 0, 0), (2, 43), (19, 33)),
            (51.507, -0.128, utc(2024, 6, 21, 0, 0), (3, 43), (20, 21)),
            (51.507, -0.128, utc(2024, 12, 21, 0, 0), (8, 4), (15, 53)),
        ];
        for (lat, lon, midnight, (rh, rm), (sh, sm)) in cases {
            let sunrise = next_crossing(lat, lon, midnight, true);
            let sunset = next_crossing(lat, lon, sunrise, false);
            let want_rise = midnight + rh * 3600 + rm * 60;
            let want_set = midnight + sh * 3600 + sm * 60;
            assert!(
                (sunrise - want_rise).abs() <= 4 * 60,
                "sunrise off by {} s",
                sunrise - want_rise
            );
            assert!(
                (sunset - want_set).abs() <= 4 * 60,
                "sunset off by {} s",
                sunset - want_set
            );
        }
    }

    #[test]
    fn clear_sky_ghi_is_zero_at_night_and_about_a_kilowatt_at_tropical_noon() {
        assert_eq!(clear_sky_ghi_w_m2(52.5, 13.4, utc(2024, 1, 15, 0, 0)), 0.0);
        // Singapore (1.35 N, 103.8 E) at solar noon (~05:10 UTC) in March.
        let noon = (0..120)
            .map(|m| clear_sky_ghi_w_m2(1.35, 103.8, utc(2024, 3, 20, 4, 10) + m * 60))
            .fold(0.0, f64::max);
        assert!((900.0..=1050.0).contains(&noon), "{noon}");
        // Berlin winter noon is far weaker than summer noon.
        let winter = clear_sky_ghi_w_m2(52.5, 13.4, utc(2024, 12, 21, 11, 0));
        let summer = clear_sky_ghi_w_m2(52.5, 13.4, utc(2024, 6, 21, 11, 0));
        assert!(
            winter > 100.0 && winter < 300.0 && summer > 750.0,
            "{winter} {summer}"
        );
    }

    #[test]
    fn daylight_covers_steps_that_contain_sunrise() {
        // Berlin 2024-06-21: sunrise 02:43 UTC.
        let hour = |h| utc(2024, 6, 21, h, 0);
        assert!(!is_daylight(52.52, 13.405, hour(1), 3600));
        assert!(is_daylight(52.52, 13.405, hour(2), 3600));
        assert!(is_daylight(52.52, 13.405, hour(11), 3600));
        assert!(!is_daylight(52.52, 13.405, hour(20), 3600));
    }

    #[test]
    fn erbs_split_conserves_ghi_and_poa_follows_orientation() {
        let t = utc(2024, 6, 21, 11, 0);
        let sun = sun_position(52.52, 13.405, t);
        let ghi = haurwitz_ghi_w_m2(sun.zenith_deg);
        let split = erbs_split(ghi, &sun, t);
        let rebuilt = split.dni_w_m2 * sun.cos_zenith() + split.dhi_w_m2;
        assert!((rebuilt - ghi).abs() < 1e-6 * ghi, "{split:?}");
        assert!(
            split.dhi_w_m2 < 0.3 * ghi,
            "clear sky is mostly beam: {split:?}"
        );
        let flat = ArrayOrientation {
            tilt_deg: 0.0,
            azimuth_deg: 180.0,
        };
        let south = ArrayOrientation {
            tilt_deg: 35.0,
            azimuth_deg: 180.0,
        };
        let north = ArrayOrientation {
            tilt_deg: 35.0,
            azimuth_deg: 0.0,
        };
        let poa = |a: &ArrayOrientation| plane_of_array_w_m2(&split, &sun, a, DEFAULT_ALBEDO);
        assert!((poa(&flat) - ghi).abs() < 1e-6 * ghi);
        assert!(poa(&south) > poa(&north), "{} {}", poa(&south), poa(&north));
        // Overcast light is all diffuse.
        let dull = erbs_split(80.0, &sun, t);
        assert!(dull.dhi_w_m2 > 0.9 * 80.0, "{dull:?}");
    }
}
