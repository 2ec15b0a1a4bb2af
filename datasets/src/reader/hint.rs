//! "Did you mean" hints for column names, so a typo is reported instead of silently ignored.

/// Levenshtein distance between two names, compared case-insensitively (a case-only
/// difference is distance 0 and reported separately).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate `name` most plausibly meant, if any is close enough: within an edit
/// distance of 2 (a quarter of the length for long names), or a prefix of at least two
/// characters either way (`load` for `load_kw`). Ties go to the earlier candidate.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let distance = edit_distance(name, candidate);
            let candidate_lower = candidate.to_lowercase();
            let prefix = lower.len() >= 2
                && (candidate_lower.starts_with(&lower) || lower.starts_with(&candidate_lower));
            let close = distance <= 2.max(candidate.len() / 4);
            (close || prefix).then_some((distance, candidate))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Why `found` is taken for `wanted`: case or spelling.
pub(crate) fn found_instead(wanted: &str, found: &str) -> String {
    if wanted.eq_ignore_ascii_case(found) {
        format!(" (found `{found}`: column names are case-sensitive)")
    } else {
        format!(" (found `{found}`: misspelled? rename it to `{wanted}`)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("timestamp", "timestmap"), 2);
        assert_eq!(edit_distance("load_kW", "load_kw"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("pv_kwh", "pv_kw"), 1);
    }

    #[test]
    fn closest_picks_plausible_names_only() {
        let schema = [
            "timestamp",
            "site_id",
            "load_kw",
            "pv_kw",
            "temperature_c",
            "temperature_forecast_c",
        ];
        assert_eq!(closest("timestmap", schema), Some("timestamp"));
        assert_eq!(closest("load_kW", schema), Some("load_kw"));
        assert_eq!(closest("load", schema), Some("load_kw"));
        assert_eq!(closest("temperature", schema), Some("temperature_c"));
        assert_eq!(closest("humidity", schema), None);
        assert_eq!(closest("site_name", schema), None);
    }

    #[test]
    fn case_is_named_as_the_cause() {
        assert!(found_instead("load_kw", "load_kW").contains("case-sensitive"));
        assert!(found_instead("timestamp", "timestmap").contains("misspelled"));
    }
}
