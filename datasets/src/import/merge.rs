//! Joining several imports of one site (a load CSV, a PV CSV, a weather CSV) on timestamps.

use crate::schema::VALUE_COLUMNS;
use crate::{DatasetError, SiteTelemetry};

fn check_part(part: &SiteTelemetry) -> Result<(), DatasetError> {
    if let Some(k) = part.timestamps.windows(2).position(|w| w[1] <= w[0]) {
        return Err(DatasetError::Merge(format!(
            "site `{}`: timestamps not strictly increasing at index {}",
            part.site_id,
            k + 1
        )));
    }
    for (name, column) in part.columns() {
        if column.is_some_and(|values| values.len() != part.len()) {
            return Err(DatasetError::Merge(format!(
                "site `{}`: `{name}` does not have one value per timestamp",
                part.site_id
            )));
        }
    }
    Ok(())
}

/// Joins parts of one site on the union of their timestamps. A timestamp a part lacks is
/// missing (`None`) in that part's columns; nothing is interpolated. Each column may come
/// from one part only.
pub fn merge_columns(parts: Vec<SiteTelemetry>) -> Result<SiteTelemetry, DatasetError> {
    let Some(site_id) = parts.first().map(|p| p.site_id.clone()) else {
        return Err(DatasetError::Merge("no parts to merge".into()));
    };
    for part in &parts {
        if part.site_id != site_id {
            return Err(DatasetError::Merge(format!(
                "parts belong to different sites: `{site_id}` and `{}`",
                part.site_id
            )));
        }
        check_part(part)?;
    }
    for name in VALUE_COLUMNS {
        let holders = parts
            .iter()
            .filter(|p| p.columns().iter().any(|(n, c)| *n == name && c.is_some()))
            .count();
        if holders > 1 {
            return Err(DatasetError::Merge(format!(
                "site `{site_id}`: column `{name}` comes from {holders} parts"
            )));
        }
    }
    let mut merged = SiteTelemetry::new(site_id);
    let mut timestamps: Vec<i64> = parts
        .iter()
        .flat_map(|p| p.timestamps.iter().copied())
        .collect();
    timestamps.sort_unstable();
    timestamps.dedup();
    merged.timestamps = timestamps;
    for part in parts {
        // Parts and the union are both sorted, so each part's timestamps map by binary search.
        let positions: Vec<usize> = part
            .timestamps
            .iter()
            .map(|t| merged.timestamps.binary_search(t).unwrap_or_default())
            .collect();
        for (name, column) in part.columns() {
            let Some(values) = column else { continue };
            let mut spread = vec![None; merged.timestamps.len()];
            for (&position, &value) in positions.iter().zip(values) {
                spread[position] = value;
            }
            if let Some(slot) = merged.column_mut(name) {
                *slot = Some(spread);
            }
        }
    }
    Ok(merged)
}
