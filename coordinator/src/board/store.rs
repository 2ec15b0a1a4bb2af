//! The board's redb database (`board.redb` beside `state.redb`): one JSON [`SiteForecast`]
//! per key `participant/site`, so a site's newer issue replaces the older one and a
//! participant's sites are one prefix.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::{BoardError, BoardQuery, MAX_SITES_PER_PARTICIPANT, SiteForecast};
use crate::store::{get_json, scan_json};

const FORECASTS: TableDefinition<&str, &[u8]> = TableDefinition::new("site_forecasts");

fn key(participant: &str, site: &str) -> String {
    format!("{participant}/{site}")
}

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for BoardError {
            fn from(e: $t) -> Self {
                BoardError::Store(e.to_string())
            }
        }
    )*};
}
store_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error,
    crate::CoordinatorError
);

/// Published site forecasts.
pub struct Board {
    db: Database,
}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    New,
    /// An older (or equal) issue of the same site was replaced.
    Replaced,
}

impl Board {
    pub fn open(path: &Path) -> Result<Self, BoardError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(FORECASTS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Validates and stores `forecast`, replacing the site's stored issue unless that one is
    /// newer. Check, count and write are one transaction.
    pub fn publish(
        &self,
        forecast: &SiteForecast,
        now_unix_s: i64,
    ) -> Result<Published, BoardError> {
        forecast.validate(now_unix_s)?;
        let key = key(&forecast.participant_id, &forecast.site);
        let value = serde_json::to_vec(forecast)?;
        let tx = self.db.begin_write()?;
        let outcome = {
            let mut table = tx.open_table(FORECASTS)?;
            let stored: Option<SiteForecast> = match table.get(key.as_str())? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            };
            let outcome = match stored {
                Some(s) if s.issued_unix_s > forecast.issued_unix_s => {
                    return Err(BoardError::Stale {
                        site: forecast.site.clone(),
                        stored: s.issued_unix_s,
                        issued: forecast.issued_unix_s,
                    });
                }
                Some(_) => Published::Replaced,
                None => {
                    let prefix = format!("{}/", forecast.participant_id);
                    let mut sites = 0;
                    for entry in table.range(prefix.as_str()..)? {
                        if !entry?.0.value().starts_with(&prefix) {
                            break;
                        }
                        sites += 1;
                    }
                    if sites >= MAX_SITES_PER_PARTICIPANT {
                        return Err(BoardError::TooManySites(forecast.participant_id.clone()));
                    }
                    Published::New
                }
            };
            table.insert(key.as_str(), value.as_slice())?;
            outcome
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// The stored forecast of `participant`'s `site`, unclipped.
    pub fn get(&self, participant: &str, site: &str) -> Result<Option<SiteForecast>, BoardError> {
        Ok(get_json(&self.db, FORECASTS, &key(participant, site))?)
    }

    /// Forecasts matching `query`, clipped to its range, in key order; those with no step in
    /// range are left out. Scans one participant's prefix when the query names one, else the
    /// table (bounded by participants x [`MAX_SITES_PER_PARTICIPANT`]).
    pub fn query(&self, query: &BoardQuery) -> Result<Vec<SiteForecast>, BoardError> {
        query.validate()?;
        let prefix = query
            .participant_id
            .as_ref()
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        let all: Vec<SiteForecast> = scan_json(&self.db, FORECASTS, &prefix)?;
        Ok(all
            .iter()
            .filter(|f| query.matches(f))
            .filter_map(|f| f.clipped(query.from_unix_s, query.to_unix_s))
            .collect())
    }
}
