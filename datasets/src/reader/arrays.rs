//! Typed views of one record batch's columns, checked against the [`FileLayout`].

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, Float32Array, Float64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::TimeUnit;

use super::layout::{FileLayout, ValueType};
use crate::DatasetError;

/// The batch disagrees with the schema it was read under (a corrupt file).
fn unexpected(path: &Path, column: &str, array: &dyn Array, expected: &str) -> DatasetError {
    DatasetError::WrongType {
        path: path.to_path_buf(),
        column: column.to_string(),
        expected: expected.to_string(),
        found: array.data_type().to_string(),
    }
}

/// Raw timestamps of a batch in the file's unit.
pub(crate) struct Timestamps<'a> {
    values: &'a [i64],
    array: &'a dyn Array,
}

impl<'a> Timestamps<'a> {
    pub(crate) fn new(
        path: &Path,
        column: &str,
        array: &'a dyn Array,
        unit: TimeUnit,
    ) -> Result<Self, DatasetError> {
        let values = match unit {
            TimeUnit::Second => array
                .as_primitive_opt::<TimestampSecondType>()
                .map(|a| &a.values()[..]),
            TimeUnit::Millisecond => array
                .as_primitive_opt::<TimestampMillisecondType>()
                .map(|a| &a.values()[..]),
            TimeUnit::Microsecond => array
                .as_primitive_opt::<TimestampMicrosecondType>()
                .map(|a| &a.values()[..]),
            TimeUnit::Nanosecond => array
                .as_primitive_opt::<TimestampNanosecondType>()
                .map(|a| &a.values()[..]),
        };
        let values = values.ok_or_else(|| unexpected(path, column, array, "Timestamp"))?;
        Ok(Self { values, array })
    }

    pub(crate) fn get(&self, i: usize) -> Option<i64> {
        (!self.array.is_null(i)).then(|| self.values[i])
    }
}

pub(crate) enum Strings<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        if let Some(a) = array.as_string_opt::<i32>() {
            Some(Strings::Utf8(a))
        } else if let Some(a) = array.as_string_opt::<i64>() {
            Some(Strings::Large(a))
        } else {
            array.as_string_view_opt().map(Strings::View)
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strings::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strings::Large(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strings::View(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

/// Site ids of a batch, plain or dictionary-encoded.
pub(crate) enum SiteIds<'a> {
    Plain(Strings<'a>),
    Dictionary {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Strings<'a>,
    },
}

impl<'a> SiteIds<'a> {
    pub(crate) fn new(
        path: &Path,
        column: &str,
        array: &'a dyn Array,
    ) -> Result<Self, DatasetError> {
        let expected = "Utf8 (or LargeUtf8, or a dictionary of Utf8)";
        if let Some(dictionary) = array.as_any_dictionary_opt() {
            let values = Strings::new(dictionary.values().as_ref())
                .ok_or_else(|| unexpected(path, column, array, expected))?;
            // normalized_keys needs a non-empty dictionary; an empty one means every key is null.
            let keys = if dictionary.values().is_empty() {
                Vec::new()
            } else {
                dictionary.normalized_keys()
            };
            return Ok(SiteIds::Dictionary {
                array,
                keys,
                values,
            });
        }
        Strings::new(array)
            .map(SiteIds::Plain)
            .ok_or_else(|| unexpected(path, column, array, expected))
    }

    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            SiteIds::Plain(strings) => strings.get(i),
            SiteIds::Dictionary {
                array,
                keys,
                values,
            } => {
                if array.is_null(i) {
                    return None;
                }
                values.get(*keys.get(i)?)
            }
        }
    }
}

/// One value column of a batch, widened to f64.
pub(crate) enum Values<'a> {
    Float64(&'a Float64Array),
    Float32(&'a Float32Array),
    Null,
}

impl<'a> Values<'a> {
    pub(crate) fn new(
        path: &Path,
        column: &str,
        array: &'a dyn Array,
        stored: ValueType,
    ) -> Result<Self, DatasetError> {
        let values = match stored {
            ValueType::Float64 => array.as_primitive_opt::<Float64Type>().map(Values::Float64),
            ValueType::Float32 => array.as_primitive_opt::<Float32Type>().map(Values::Float32),
            ValueType::Null => Some(Values::Null),
        };
        values.ok_or_else(|| unexpected(path, column, array, "Float64 (or Float32)"))
    }

    pub(crate) fn get(&self, i: usize) -> Option<f64> {
        match self {
            Values::Float64(a) => (!a.is_null(i)).then(|| a.value(i)),
            Values::Float32(a) => (!a.is_null(i)).then(|| f64::from(a.value(i))),
            Values::Null => None,
        }
    }
}

/// Every column of one batch the reader needs.
pub(crate) struct BatchColumns<'a> {
    pub timestamps: Timestamps<'a>,
    pub site_ids: SiteIds<'a>,
    pub values: Vec<(&'static str, Values<'a>)>,
}

impl<'a> BatchColumns<'a> {
    pub(crate) fn new(
        path: &Path,
        layout: &FileLayout,
        batch: &'a RecordBatch,
    ) -> Result<Self, DatasetError> {
        use crate::schema::col;
        let column = |index: usize, name: &str| {
            (index < batch.num_columns())
                .then(|| batch.column(index).as_ref())
                .ok_or_else(|| DatasetError::MissingColumn {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    hint: " (absent from a record batch: corrupt file)".into(),
                })
        };
        let timestamps = Timestamps::new(
            path,
            col::TIMESTAMP,
            column(layout.timestamp, col::TIMESTAMP)?,
            layout.timestamp_unit,
        )?;
        let site_ids = SiteIds::new(path, col::SITE_ID, column(layout.site_id, col::SITE_ID)?)?;
        let values = layout
            .values
            .iter()
            .map(|&(name, index, stored)| {
                Ok((name, Values::new(path, name, column(index, name)?, stored)?))
            })
            .collect::<Result<_, DatasetError>>()?;
        Ok(Self {
            timestamps,
            site_ids,
            values,
        })
    }
}
