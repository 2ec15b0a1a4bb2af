//! Parsing the cells of an operator's CSV: local or offset timestamps, and numbers.

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// Formats tried for naive local timestamps when no format is given (after RFC3339).
const NAIVE_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// Unix seconds of a local wall-clock time in `tz`.
///
/// When clocks go back, the hour before the switch happens twice, and a local-time export
/// lists it twice, in order. Rows are in time order, so the row before decides: a repeated
/// wall time at or before the previous row's instant is the second pass (the later offset),
/// otherwise the first. Without a previous row the ambiguity is an error, and so is a time the
/// switch to DST skips: guessing would shift an hour of data.
fn localize(
    naive: NaiveDateTime,
    tz: Option<Tz>,
    previous: Option<i64>,
) -> Result<DateTime<Tz>, String> {
    // Taking naive times as UTC would shift a local export by its offset, silently.
    let tz = tz.ok_or_else(|| {
        format!(
            "`{naive}` has no UTC offset and no time zone was given: pass --timezone (an IANA \
             name such as Europe/Berlin, or UTC if the export is in UTC)"
        )
    })?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t),
        LocalResult::Ambiguous(first, second) if previous.is_some() => {
            Ok(if previous.is_some_and(|p| first.timestamp() <= p) {
                second
            } else {
                first
            })
        }
        LocalResult::Ambiguous(a, b) => Err(format!(
            "local time {naive} is ambiguous in {tz}: it occurs twice when clocks go back (offsets {} and {}); \
             export with a UTC offset or in UTC",
            a.format("%:z"),
            b.format("%:z")
        )),
        LocalResult::None => Err(format!(
            "local time {naive} does not exist in {tz}: clocks jump past it when DST starts"
        )),
    }
}

fn whole_seconds<Z: TimeZone>(t: DateTime<Z>) -> Result<i64, String> {
    if t.timestamp_subsec_nanos() == 0 {
        Ok(t.timestamp())
    } else {
        Err("has a fraction of a second".into())
    }
}

/// Parses one timestamp cell into Unix seconds. With an offset (RFC3339, or `%z` in the
/// format) the offset is used as is; `%s` is Unix time; anything else is local time in `tz`,
/// with the DST repeat resolved by `previous`, the row before's instant (see [`localize`]).
pub(super) fn parse_timestamp(
    text: &str,
    format: Option<&str>,
    tz: Option<Tz>,
    previous: Option<i64>,
) -> Result<i64, String> {
    match format {
        Some(format)
            if ["%z", "%:z", "%::z", "%#z"]
                .iter()
                .any(|z| format.contains(z)) =>
        {
            DateTime::parse_from_str(text, format)
                .map_err(|e| format!("does not match `{format}`: {e}"))
                .and_then(whole_seconds)
        }
        Some(format) => {
            let naive = NaiveDateTime::parse_from_str(text, format)
                .map_err(|e| format!("does not match `{format}`: {e}"))?;
            if format.contains("%s") {
                whole_seconds(naive.and_utc())
            } else {
                whole_seconds(localize(naive, tz, previous)?)
            }
        }
        None => {
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return whole_seconds(t);
            }
            let naive = NAIVE_FORMATS
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .ok_or_else(|| {
                    "is neither RFC3339 nor `%Y-%m-%d %H:%M:%S` (give a timestamp format)"
                        .to_string()
                })?;
            whole_seconds(localize(naive, tz, previous)?)
        }
    }
}

/// Parses a number cell; `decimal_comma` accepts `1,5` for 1.5 (files separated by `;`).
/// `NaN` and `inf` parse here and are refused by the value checks.
pub(super) fn parse_number(text: &str, decimal_comma: bool) -> Option<f64> {
    text.parse().ok().or_else(|| {
        let comma = decimal_comma && text.matches(',').count() == 1 && !text.contains('.');
        comma.then(|| text.replace(',', ".").parse().ok()).flatten()
    })
}

/// The field delimiter guessed from the header line: the most frequent of `,` `;` and tab.
pub(super) fn sniff_delimiter(header: &[u8]) -> u8 {
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (header.iter().filter(|&&b| b == *d).count(), *d == b','))
        .unwrap_or(b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    #[test]
    fn local_and_offset_timestamps() {
        // 2024-01-15 12:00 in Berlin is 11:00 UTC.
        assert_eq!(
            parse_timestamp("2024-01-15 12:00:00", None, Some(BERLIN), None),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp("2024-01-15T11:00:00Z", None, Some(BERLIN), None),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp("2024-01-15T12:00:00+01:00", None, Some(BERLIN), None),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp(
                "15.01.2024 12:00",
                Some("%d.%m.%Y %H:%M"),
                Some(BERLIN),
                None
            ),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp("1705316400", Some("%s"), Some(BERLIN), None),
            Ok(1_705_316_400)
        );
    }

    #[test]
    fn the_repeated_hour_of_a_local_export_is_resolved_by_row_order() {
        // Berlin, 2024-10-27: 02:00-02:59 happens at +02:00 (00:xx UTC), then at +01:00.
        let first = parse_timestamp(
            "2024-10-27 02:00:00",
            None,
            Some(BERLIN),
            Some(1_729_983_600),
        );
        assert_eq!(first, Ok(1_729_987_200), "00:00 UTC");
        let second = parse_timestamp(
            "2024-10-27 02:00:00",
            None,
            Some(BERLIN),
            Some(1_729_987_200),
        );
        assert_eq!(second, Ok(1_729_990_800), "01:00 UTC");
        let quarter = parse_timestamp(
            "2024-10-27 02:15:00",
            None,
            Some(BERLIN),
            Some(1_729_990_800),
        );
        assert_eq!(
            quarter,
            Ok(1_729_991_700),
            "01:15 UTC, still the second pass"
        );
    }

    #[test]
    fn dst_switches_are_refused() {
        let gap = parse_timestamp("2024-03-31 02:30:00", None, Some(BERLIN), None).unwrap_err();
        assert!(gap.contains("does not exist"), "{gap}");
        let twice = parse_timestamp("2024-10-27 02:30:00", None, Some(BERLIN), None).unwrap_err();
        assert!(twice.contains("ambiguous"), "{twice}");
        assert!(
            parse_timestamp(
                "2024-01-15 12:00:00.5",
                Some("%Y-%m-%d %H:%M:%S%.f"),
                Some(BERLIN),
                None
            )
            .is_err()
        );
        assert!(parse_timestamp("yesterday", None, Some(BERLIN), None).is_err());
    }

    #[test]
    fn naive_times_need_a_time_zone() {
        let err = parse_timestamp("2024-01-15 12:00:00", None, None, None).unwrap_err();
        assert!(err.contains("--timezone"), "{err}");
        // Offsets and unix seconds carry their own zone.
        assert_eq!(
            parse_timestamp("2024-01-15T12:00:00+01:00", None, None, None),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp("1705316400", Some("%s"), None, None),
            Ok(1_705_316_400)
        );
        assert_eq!(
            parse_timestamp("2024-01-15 11:00:00", None, Some(chrono_tz::UTC), None),
            Ok(1_705_316_400)
        );
    }

    #[test]
    fn numbers_and_delimiters() {
        assert_eq!(parse_number("1.5", false), Some(1.5));
        assert_eq!(parse_number("1,5", true), Some(1.5));
        assert_eq!(parse_number("1,5", false), None);
        assert_eq!(parse_number("1,000.5", true), None);
        assert_eq!(parse_number("abc", true), None);
        assert_eq!(sniff_delimiter(b"time;value\n"), b';');
        assert_eq!(sniff_delimiter(b"time,value\n"), b',');
        assert_eq!(sniff_delimiter(b"time\tvalue\n"), b'\t');
        assert_eq!(sniff_delimiter(b"time\n"), b',');
    }
}
