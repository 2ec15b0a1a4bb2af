//! Where the schema columns sit in a file and whether their types are acceptable.

use std::path::Path;

use arrow_schema::{DataType, Schema, TimeUnit};

use super::hint::{closest, found_instead};
use crate::DatasetError;
use crate::schema::{TARGET_COLUMNS, VALUE_COLUMNS, col};

/// How a value column is stored; both float widths read as f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    Float64,
    Float32,
    /// An all-null column (pyarrow writes a column of only missing values with type null).
    Null,
}

/// The validated column layout of one file.
#[derive(Debug)]
pub(crate) struct FileLayout {
    pub timestamp: usize,
    pub timestamp_unit: TimeUnit,
    pub site_id: usize,
    /// Schema name, index in the file, stored type.
    pub values: Vec<(&'static str, usize, ValueType)>,
}

fn schema_columns() -> impl Iterator<Item = &'static str> {
    [col::TIMESTAMP, col::SITE_ID]
        .into_iter()
        .chain(VALUE_COLUMNS)
}

fn wrong_type(
    path: &Path,
    column: &str,
    expected: &str,
    found: &DataType,
    note: &str,
) -> DatasetError {
    DatasetError::WrongType {
        path: path.to_path_buf(),
        column: column.to_string(),
        expected: expected.to_string(),
        found: format!("{found}{note}"),
    }
}

impl FileLayout {
    /// Checks names first (a misspelled schema column is reported as missing with what was
    /// found instead; any other extra column is an error, so a typo is never ignored), then types.
    pub(crate) fn from_schema(path: &Path, schema: &Schema) -> Result<Self, DatasetError> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for (i, &name) in names.iter().enumerate() {
            if names[..i].contains(&name) {
                return Err(DatasetError::UnknownColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    hint: " (the column appears twice)".into(),
                });
            }
            if schema_columns().any(|known| known == name) {
                continue;
            }
            let hint = match closest(name, schema_columns()) {
                Some(meant) if !names.contains(&meant) => {
                    return Err(DatasetError::MissingColumn {
                        path: path.to_path_buf(),
                        column: meant.to_string(),
                        hint: found_instead(meant, name),
                    });
                }
                Some(meant) => format!(" (did you mean `{meant}`? it is already present)"),
                None => format!(
                    " (allowed columns: {}; drop other columns before validating)",
                    schema_columns().collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(DatasetError::UnknownColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                hint,
            });
        }
        let position = |column: &str| names.iter().position(|&n| n == column);
        let missing = |column: &str| DatasetError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            hint: format!(" (the file has: {})", names.join(", ")),
        };
        let timestamp = position(col::TIMESTAMP).ok_or_else(|| missing(col::TIMESTAMP))?;
        let site_id = position(col::SITE_ID).ok_or_else(|| missing(col::SITE_ID))?;
        if !TARGET_COLUMNS.iter().any(|target| names.contains(target)) {
            return Err(DatasetError::NoTarget {
                path: path.to_path_buf(),
            });
        }

        let timestamp_unit = match schema.field(timestamp).data_type() {
            DataType::Timestamp(unit, Some(_)) => *unit,
            // Naive timestamps are often local wall-clock time; taking them as UTC would
            // silently shift a site by its offset, so they are refused.
            found @ DataType::Timestamp(_, None) => {
                return Err(wrong_type(
                    path,
                    col::TIMESTAMP,
                    "Timestamp with time zone UTC",
                    found,
                    " (tz-naive: localize to UTC first, e.g. pandas `.dt.tz_localize(\"UTC\")`)",
                ));
            }
            found => {
                return Err(wrong_type(
                    path,
                    col::TIMESTAMP,
                    "Timestamp with time zone UTC",
                    found,
                    "",
                ));
            }
        };
        let is_string =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        match schema.field(site_id).data_type() {
            t if is_string(t) => {}
            DataType::Dictionary(_, value) if is_string(value) => {}
            found => {
                return Err(wrong_type(
                    path,
                    col::SITE_ID,
                    "Utf8 (or LargeUtf8, or a dictionary of Utf8)",
                    found,
                    "",
                ));
            }
        }
        let mut values = Vec::new();
        for name in VALUE_COLUMNS {
            let Some(index) = position(name) else {
                continue;
            };
            let value_type = match schema.field(index).data_type() {
                DataType::Float64 => ValueType::Float64,
                DataType::Float32 => ValueType::Float32,
                DataType::Null => ValueType::Null,
                found => return Err(wrong_type(path, name, "Float64 (or Float32)", found, "")),
            };
            values.push((name, index, value_type));
        }
        Ok(Self {
            timestamp,
            timestamp_unit,
            site_id,
            values,
        })
    }

    /// How many raw timestamp units make one second.
    pub(crate) fn units_per_second(&self) -> i64 {
        match self.timestamp_unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
    }
}
