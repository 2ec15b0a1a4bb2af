//! Collects the rows of each site from successive record batches, checking them as they come.

use std::collections::HashMap;
use std::path::Path;

use super::ValidatedSite;
use super::arrays::BatchColumns;
use super::checks::{SiteTimes, check_value, rfc3339, value_error};
use super::layout::FileLayout;
use crate::schema::col;
use crate::{DatasetError, SiteMetadata, SiteTelemetry};

/// Rows of one site read so far.
struct SiteRows<'m> {
    metadata: &'m SiteMetadata,
    telemetry: SiteTelemetry,
    /// The 0-based data row in the file of each timestamp, for error messages.
    rows: Vec<usize>,
}

/// All sites of one file, in order of first appearance.
pub(crate) struct FileSites<'a> {
    path: &'a Path,
    layout: &'a FileLayout,
    metadata: &'a [SiteMetadata],
    sites: Vec<SiteRows<'a>>,
    index: HashMap<String, usize>,
}

impl<'a> FileSites<'a> {
    pub(crate) fn new(
        path: &'a Path,
        layout: &'a FileLayout,
        metadata: &'a [SiteMetadata],
    ) -> Self {
        Self {
            path,
            layout,
            metadata,
            sites: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn null(&self, column: &str, row: usize) -> DatasetError {
        DatasetError::NullValue {
            path: self.path.to_path_buf(),
            column: column.to_string(),
            row,
        }
    }

    /// The index of `site` in `self.sites`, opening it on first sight.
    fn site_index(&mut self, site: &str, row: usize) -> Result<usize, DatasetError> {
        if let Some(&i) = self.index.get(site) {
            return Ok(i);
        }
        let metadata = self
            .metadata
            .iter()
            .find(|m| m.site_id == site)
            .ok_or_else(|| DatasetError::UnknownSite {
                path: self.path.to_path_buf(),
                site: site.to_string(),
                row,
            })?;
        let mut telemetry = SiteTelemetry::new(site);
        for &(name, _, _) in &self.layout.values {
            if let Some(slot) = telemetry.column_mut(name) {
                *slot = Some(Vec::new());
            }
        }
        self.sites.push(SiteRows {
            metadata,
            telemetry,
            rows: Vec::new(),
        });
        self.index.insert(site.to_string(), self.sites.len() - 1);
        Ok(self.sites.len() - 1)
    }

    /// Checks and appends the rows of one batch whose first row is data row `first_row`.
    pub(crate) fn push(
        &mut self,
        columns: &BatchColumns<'_>,
        len: usize,
        first_row: usize,
    ) -> Result<(), DatasetError> {
        let per_second = self.layout.units_per_second();
        // Rows of one site usually come in runs: skip the hash lookup while the site repeats.
        let mut current: Option<(&str, usize)> = None;
        for i in 0..len {
            let row = first_row + i;
            let raw = columns
                .timestamps
                .get(i)
                .ok_or_else(|| self.null(col::TIMESTAMP, row))?;
            let site = columns
                .site_ids
                .get(i)
                .ok_or_else(|| self.null(col::SITE_ID, row))?;
            let s = match current {
                Some((id, s)) if id == site => s,
                _ => self.site_index(site, row)?,
            };
            current = Some((site, s));
            let unix_s = raw.div_euclid(per_second);
            if raw.rem_euclid(per_second) != 0 {
                return Err(DatasetError::Resolution {
                    path: self.path.to_path_buf(),
                    site: site.to_string(),
                    reason: format!(
                        "column `{}` row {row}: timestamp {} + {} s is not a whole second, so off every grid",
                        col::TIMESTAMP,
                        rfc3339(unix_s),
                        raw.rem_euclid(per_second) as f64 / per_second as f64
                    ),
                });
            }
            let entry = &mut self.sites[s];
            if let Some(&previous) = entry.telemetry.timestamps.last() {
                if unix_s == previous {
                    return Err(DatasetError::DuplicateTimestamp {
                        path: self.path.to_path_buf(),
                        site: site.to_string(),
                        row,
                        timestamp: rfc3339(unix_s),
                    });
                }
                if unix_s < previous {
                    return Err(DatasetError::NonMonotonicTimestamp {
                        path: self.path.to_path_buf(),
                        site: site.to_string(),
                        row,
                        timestamp: rfc3339(unix_s),
                        previous: rfc3339(previous),
                    });
                }
            }
            entry.telemetry.timestamps.push(unix_s);
            entry.rows.push(row);
            for (name, values) in &columns.values {
                let value = values.get(i);
                if let Some(v) = value {
                    check_value(name, v, Some(entry.metadata))
                        .map_err(|p| value_error(self.path, name, row, v, p))?;
                }
                if let Some(Some(column)) = entry.telemetry.column_mut(name) {
                    column.push(value);
                }
            }
        }
        Ok(())
    }

    /// Detects each site's resolution and drops columns a site never fills (in a file of
    /// several sites, a building's rows have no PV), so a site only carries what it measures.
    pub(crate) fn finish(self) -> Result<Vec<ValidatedSite>, DatasetError> {
        self.sites
            .into_iter()
            .map(
                |SiteRows {
                     mut telemetry,
                     rows,
                     ..
                 }| {
                    let resolution = SiteTimes {
                        path: self.path,
                        site: &telemetry.site_id,
                        column: col::TIMESTAMP,
                        timestamps: &telemetry.timestamps,
                        rows: &rows,
                    }
                    .resolution()?;
                    for name in crate::schema::VALUE_COLUMNS {
                        if let Some(slot) = telemetry.column_mut(name)
                            && slot
                                .as_ref()
                                .is_some_and(|values| values.iter().all(Option::is_none))
                        {
                            *slot = None;
                        }
                    }
                    Ok(ValidatedSite {
                        telemetry,
                        resolution,
                    })
                },
            )
            .collect()
    }
}
