//! Local-time calendar features and a generic holiday calendar.
//!
//! Loads follow the clock on the wall, not UTC: a shop opens at 08:00 local time in winter and
//! in summer. Every feature here is computed in the site's IANA time zone, so daylight saving
//! changes move the features with the people.
//!
//! The holiday calendar is a generic European one (no regional holidays), the days on which
//! most of the continent's businesses close:
//! New Year's Day (1 Jan), Good Friday, Easter Monday, Labour Day (1 May), Ascension Day
//! (Easter + 39 days), Whit Monday (Easter + 50 days), Christmas Day (25 Dec) and St Stephen's
//! Day (26 Dec). Easter Sunday itself is a Sunday and needs no entry.

use std::f64::consts::TAU;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc, Weekday};

/// Calendar context of one instant in local time. Cyclic encodings put 23:00 next to 00:00
/// and Sunday next to Monday.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalendarFeatures {
    /// sin/cos of the fractional local hour over 24 h.
    pub hour_sin: f32,
    pub hour_cos: f32,
    /// sin/cos of the local weekday (Monday = 0) over 7 days.
    pub dow_sin: f32,
    pub dow_cos: f32,
    /// sin/cos of the fractional local day of the year over the year's length.
    pub doy_sin: f32,
    pub doy_cos: f32,
    /// Monday to Friday and not a holiday of [`is_holiday`].
    pub workday: bool,
}

/// Earliest and latest instants handled, 0001-01-02 and 9999-12-30 UTC: a day inside the
/// range chrono can represent in any time zone. Timestamps beyond are clamped, since no
/// telemetry is dated there and clamping keeps [`calendar_features`] total.
const MIN_UNIX_S: i64 = -62_135_510_400;
const MAX_UNIX_S: i64 = 253_402_128_000;

/// Easter Sunday of `year` in the Gregorian calendar (anonymous Gregorian algorithm of
/// Meeus/Jones/Butcher); `None` only for years chrono cannot represent.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let y = year;
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    NaiveDate::from_ymd_opt(y, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// Whether `date` is a holiday of the generic calendar described in the module docs.
pub fn is_holiday(date: NaiveDate) -> bool {
    let fixed = matches!(
        (date.month(), date.day()),
        (1, 1) | (5, 1) | (12, 25) | (12, 26)
    );
    if fixed {
        return true;
    }
    let Some(easter) = easter_sunday(date.year()) else {
        return false;
    };
    // Good Friday, Easter Monday, Ascension Day, Whit Monday.
    [-2, 1, 39, 50]
        .iter()
        .any(|&offset| easter.checked_add_signed(Duration::days(offset)) == Some(date))
}

/// Monday to Friday and not a holiday.
pub fn is_workday(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_holiday(date)
}

/// Local wall-clock date and time of `unix_s` in `tz` (timestamps outside years 1-9999 are
/// clamped into them).
pub fn local_datetime(tz: chrono_tz::Tz, unix_s: i64) -> chrono::NaiveDateTime {
    let clamped = unix_s.clamp(MIN_UNIX_S, MAX_UNIX_S);
    // In range by the clamp above; the fallback only keeps this total.
    let utc = DateTime::<Utc>::from_timestamp(clamped, 0).unwrap_or(DateTime::UNIX_EPOCH);
    utc.with_timezone(&tz).naive_local()
}

/// Calendar features of the instant `unix_s` in the time zone `tz`.
pub fn calendar_features(tz: chrono_tz::Tz, unix_s: i64) -> CalendarFeatures {
    let local = local_datetime(tz, unix_s);
    let date = local.date();
    let hour = f64::from(local.hour())
        + f64::from(local.minute()) / 60.0
        + f64::from(local.second()) / 3600.0;
    let weekday = f64::from(date.weekday().num_days_from_monday());
    let days_in_year = if date.leap_year() { 366.0 } else { 365.0 };
    let day_of_year = f64::from(date.ordinal0()) + hour / 24.0;
    let cyclic = |value: f64, period: f64| {
        let (s, c) = (TAU * value / period).sin_cos();
        (s as f32, c as f32)
    };
    let (hour_sin, hour_cos) = cyclic(hour, 24.0);
    let (dow_sin, dow_cos) = cyclic(weekday, 7.0);
    let (doy_sin, doy_cos) = cyclic(day_of_year, days_in_year);
    CalendarFeatures {
        hour_sin,
        hour_cos,
        dow_sin,
        dow_cos,
        doy_sin,
        doy_cos,
        workday: is_workday(date),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    fn utc(y: i32, m: u32, d: u32, hh: u32, mm: u32) -> i64 {
        date(y, m, d)
            .and_hms_opt(hh, mm, 0)
            .expect("valid test time")
            .and_utc()
            .timestamp()
    }

    /// The fractional hour encoded in a feature pair.
    fn hour_of(f: &CalendarFeatures) -> f64 {
        (f64::from(f.hour_sin).atan2(f64::from(f.hour_cos)) / TAU * 24.0).rem_euclid(24.0)
    }

    #[test]
    fn easter_dates_of_known_years() {
        let known = [
            (1818, 3, 22),
            (1943, 4, 25),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2038, 4, 25),
        ];
        for (y, m, d) in known {
            assert_eq!(easter_sunday(y), Some(date(y, m, d)), "year {y}");
        }
    }

    #[test]
    fn holidays_follow_easter_and_fixed_dates() {
        for holiday in [
            date(2024, 1, 1),
            date(2024, 3, 29),
            date(2024, 4, 1),
            date(2024, 5, 1),
            date(2024, 5, 9),
            date(2024, 5, 20),
            date(2024, 12, 25),
            date(2024, 12, 26),
            date(2025, 4, 18),
        ] {
            assert!(is_holiday(holiday), "{holiday}");
            assert!(!is_workday(holiday), "{holiday}");
        }
        assert!(!is_holiday(date(2024, 4, 2)));
        assert!(is_workday(date(2024, 4, 2)), "Tuesday after Easter Monday");
        assert!(!is_workday(date(2024, 4, 6)), "Saturday");
        assert!(!is_workday(date(2024, 4, 7)), "Sunday");
    }

    #[test]
    fn berlin_local_hour_follows_daylight_saving() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2024-03-31 DST starts at 01:00 UTC: 00:30 UTC is 01:30 CET, 01:30 UTC is 03:30 CEST.
        let before = calendar_features(berlin, utc(2024, 3, 31, 0, 30));
        let after = calendar_features(berlin, utc(2024, 3, 31, 1, 30));
        assert!(
            (hour_of(&before) - 1.5).abs() < 1e-3,
            "{}",
            hour_of(&before)
        );
        assert!((hour_of(&after) - 3.5).abs() < 1e-3, "{}", hour_of(&after));
        // 2024-10-27 DST ends at 01:00 UTC: 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET.
        let summer = calendar_features(berlin, utc(2024, 10, 27, 0, 30));
        let winter = calendar_features(berlin, utc(2024, 10, 27, 1, 30));
        assert!((hour_of(&summer) - 2.5).abs() < 1e-3 && (hour_of(&winter) - 2.5).abs() < 1e-3);
        // 23:30 UTC on a Friday is already Saturday in Berlin: not a workday.
        let friday_night = calendar_features(berlin, utc(2024, 6, 14, 23, 30));
        assert!(!friday_night.workday);
        assert!(calendar_features(chrono_tz::UTC, utc(2024, 6, 14, 23, 30)).workday);
    }

    #[test]
    fn cyclic_features_are_on_the_unit_circle_and_weekday_is_encoded() {
        let tz = chrono_tz::Europe::Madrid;
        let monday = calendar_features(tz, utc(2024, 6, 10, 10, 0));
        assert_eq!((monday.dow_sin, monday.dow_cos), (0.0, 1.0));
        for t in [
            utc(2024, 1, 1, 0, 0),
            utc(2024, 7, 3, 13, 17),
            i64::MIN,
            i64::MAX,
        ] {
            let f = calendar_features(tz, t);
            for (s, c) in [
                (f.hour_sin, f.hour_cos),
                (f.dow_sin, f.dow_cos),
                (f.doy_sin, f.doy_cos),
            ] {
                assert!((s * s + c * c - 1.0).abs() < 1e-5, "{f:?}");
            }
        }
        // New Year's midnight local time sits at day-of-year angle 0.
        let new_year = calendar_features(tz, utc(2023, 12, 31, 23, 0));
        assert!(
            new_year.doy_sin.abs() < 1e-6 && new_year.doy_cos > 0.999_99,
            "{new_year:?}"
        );
    }
}
