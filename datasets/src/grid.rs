//! Regular time grids: resolutions and resampling onto them (gaps stay missing).

use serde::{Deserialize, Serialize};

use crate::SiteTelemetry;

/// A supported regular grid resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resolution {
    #[serde(rename = "15min")]
    Min15,
    #[serde(rename = "30min")]
    Min30,
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Min15, Resolution::Min30, Resolution::Hour];

    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Min15 => 900,
            Resolution::Min30 => 1800,
            Resolution::Hour => 3600,
        }
    }

    pub fn steps_per_day(self) -> usize {
        (86_400 / self.seconds()) as usize
    }

    /// The resolution whose step is exactly `seconds`, if supported.
    pub fn from_seconds(seconds: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.seconds() == seconds)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Min15 => "15min",
            Resolution::Min30 => "30min",
            Resolution::Hour => "1h",
        }
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "15min" | "15m" => Ok(Resolution::Min15),
            "30min" | "30m" => Ok(Resolution::Min30),
            "1h" | "60min" | "hourly" => Ok(Resolution::Hour),
            other => Err(format!(
                "unsupported resolution `{other}` (use 15min, 30min or 1h)"
            )),
        }
    }
}

/// Telemetry on a regular grid: `telemetry.timestamps[i] == start + i * resolution`.
/// Steps with no reading are `None` in every column.
#[derive(Clone, Debug, PartialEq)]
pub struct RegularSeries {
    pub resolution: Resolution,
    pub telemetry: SiteTelemetry,
}

impl RegularSeries {
    /// Puts validated telemetry recorded at `native` resolution onto a regular grid at `target`.
    ///
    /// Aggregation is the mean over the native steps of a target step, and a target step has a
    /// value only if *every* native step in it has one: a partial hour is missing, not guessed.
    /// Upsampling (target finer than native) is refused: it would invent data.
    pub fn resample(
        telemetry: &SiteTelemetry,
        native: Resolution,
        target: Resolution,
    ) -> Result<Self, crate::DatasetError> {
        let (native_s, target_s) = (native.seconds(), target.seconds());
        if target_s < native_s || target_s % native_s != 0 {
            return Err(crate::DatasetError::Window(format!(
                "site `{}`: cannot resample {native} data to {target} (only to a coarser multiple)",
                telemetry.site_id
            )));
        }
        let mut out = SiteTelemetry::new(telemetry.site_id.clone());
        let (Some(&first), Some(&last)) =
            (telemetry.timestamps.first(), telemetry.timestamps.last())
        else {
            return Ok(Self {
                resolution: target,
                telemetry: out,
            });
        };
        let start = first.div_euclid(target_s) * target_s;
        let steps = (last.div_euclid(target_s) * target_s - start) / target_s + 1;
        let steps = usize::try_from(steps).map_err(|_| {
            crate::DatasetError::Window(format!("site `{}`: empty time span", telemetry.site_id))
        })?;
        out.timestamps = (0..steps as i64).map(|i| start + i * target_s).collect();
        let per_bucket = (target_s / native_s) as u32;
        let bucket_of: Vec<usize> = telemetry
            .timestamps
            .iter()
            .map(|&t| ((t.div_euclid(target_s) * target_s - start) / target_s) as usize)
            .collect();
        for (name, column) in telemetry.columns() {
            let Some(values) = column else { continue };
            let mut sum = vec![0.0f64; steps];
            let mut count = vec![0u32; steps];
            for (&bucket, value) in bucket_of.iter().zip(values) {
                if let Some(v) = value {
                    sum[bucket] += v;
                    count[bucket] += 1;
                }
            }
            let resampled = sum
                .iter()
                .zip(&count)
                .map(|(&s, &c)| (c == per_bucket).then(|| s / f64::from(c)))
                .collect();
            if let Some(slot) = out.column_mut(name) {
                *slot = Some(resampled);
            }
        }
        Ok(Self {
            resolution: target,
            telemetry: out,
        })
    }

    /// Index of the grid step at `unix_s`, if it lies on the grid.
    pub fn index_of(&self, unix_s: i64) -> Option<usize> {
        let start = *self.telemetry.timestamps.first()?;
        let offset = unix_s - start;
        let step = self.resolution.seconds();
        if offset < 0 || offset % step != 0 {
            return None;
        }
        let i = (offset / step) as usize;
        (i < self.telemetry.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarter_hourly(values: &[Option<f64>]) -> SiteTelemetry {
        let mut t = SiteTelemetry::new("s");
        t.timestamps = (0..values.len() as i64).map(|i| 3600 + i * 900).collect();
        t.load_kw = Some(values.to_vec());
        t
    }

    #[test]
    fn hourly_mean_needs_every_quarter() {
        let t = quarter_hourly(&[
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(4.0),
            Some(5.0),
            None,
            Some(5.0),
            Some(5.0),
        ]);
        let r = RegularSeries::resample(&t, Resolution::Min15, Resolution::Hour).unwrap();
        assert_eq!(r.telemetry.timestamps, vec![3600, 7200]);
        assert_eq!(r.telemetry.load_kw, Some(vec![Some(2.5), None]));
        assert_eq!(r.index_of(7200), Some(1));
        assert_eq!(r.index_of(7300), None);
    }

    #[test]
    fn upsampling_is_refused() {
        let t = quarter_hourly(&[Some(1.0)]);
        let err = RegularSeries::resample(&t, Resolution::Hour, Resolution::Min15).unwrap_err();
        assert!(
            err.to_string().contains("cannot resample 1h data to 15min"),
            "{err}"
        );
    }
}
