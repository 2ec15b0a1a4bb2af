//! The board's store (`board.redb` beside `state.redb`, or the shared PostgreSQL): one JSON [`SiteForecast`]
//! per key `participant/site`, so a site's newer issue replaces the older one and a
//! participant's sites are one prefix.

use std::path::Path;

use super::{BoardError, BoardQuery, MAX_SITES_PER_PARTICIPANT, SiteForecast};
use crate::storage::{Kv, Storage, StorageError, StoreFile, Table, redb_kv};

fn key(participant: &str, site: &str) -> String {
    format!("{participant}/{site}")
}

impl From<StorageError> for BoardError {
    fn from(e: StorageError) -> Self {
        BoardError::Store(e.to_string())
    }
}

impl From<crate::CoordinatorError> for BoardError {
    fn from(e: crate::CoordinatorError) -> Self {
        BoardError::Store(e.to_string())
    }
}

/// Published site forecasts.
pub struct Board {
    kv: Kv,
}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    New,
    /// An older (or equal) issue of the same site was replaced.
    Replaced,
}

impl Board {
    /// The embedded board: a redb file at `path`.
    pub fn open(path: &Path) -> Result<Self, BoardError> {
        Ok(Self::new(redb_kv(path, StoreFile::Board.tables())?))
    }

    /// The board of an opened [`Storage`].
    pub fn in_storage(storage: &Storage) -> Result<Self, BoardError> {
        Ok(Self::new(storage.kv(StoreFile::Board)?))
    }

    pub fn new(kv: Kv) -> Self {
        Self { kv }
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
        self.kv.transact(|txn| {
            let stored: Option<SiteForecast> = txn.get(Table::SiteForecasts, &key)?;
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
                    if txn.count(Table::SiteForecasts, &prefix)? >= MAX_SITES_PER_PARTICIPANT {
                        return Err(BoardError::TooManySites(forecast.participant_id.clone()));
                    }
                    Published::New
                }
            };
            txn.put(Table::SiteForecasts, &key, forecast)?;
            Ok(outcome)
        })
    }

    /// The stored forecast of `participant`'s `site`, unclipped.
    pub fn get(&self, participant: &str, site: &str) -> Result<Option<SiteForecast>, BoardError> {
        Ok(self.kv.get(Table::SiteForecasts, &key(participant, site))?)
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
        let all: Vec<SiteForecast> = self.kv.scan(Table::SiteForecasts, &prefix)?;
        Ok(all
            .iter()
            .filter(|f| query.matches(f))
            .filter_map(|f| f.clipped(query.from_unix_s, query.to_unix_s))
            .collect())
    }
}
