//! Exactly one round driver per PostgreSQL schema.
//!
//! Coordinators sharing a schema (an active one and standbys) each ask for a session-level
//! advisory lock named after the schema, on a connection of their own. The one that gets it
//! drives every federation of the schema: it opens the hub (aborting a round its predecessor
//! left in flight), binds its address and serves. The others wait, polling. PostgreSQL releases
//! the lock when the holder's session ends: at once when the process dies (kill -9 closes the
//! socket), and within the keepalive bound below when its host or network is lost. The holder
//! checks its session every [`CHECK_EVERY`] and stops serving when it is gone.
//!
//! The lock decides who drives; it is not what keeps versions unique. Round begin and version
//! commit are compare-and-set transactions (see [`crate::store`]), so even a holder that lost
//! its lock without noticing yet cannot commit a round another driver started or committed.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{Client, NoTls};
use tokio::sync::watch;

use crate::CoordinatorError;

/// How often the holder confirms that its session (and so its lock) is alive, and how often
/// a standby asks for the lock.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Server-side keepalive of the lease session: a holder whose host vanishes is declared dead
/// after about idle + interval x count = 5 + 2 x 3 = 11 seconds, and its lock released.
const KEEPALIVE: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                         SET tcp_keepalives_count = 3";

/// The advisory lock key of `schema`'s round driver (advisory locks are database-wide).
pub fn lock_key(schema: &str) -> i64 {
    let digest = proto::chunk::sha256(format!("gridfed round driver {schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn store_err(context: &str) -> impl Fn(postgres::Error) -> CoordinatorError + '_ {
    move |e| {
        let text = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        CoordinatorError::Store(format!("driver lease: {context}: {text}"))
    }
}

/// The held lock: the session that holds it, watched by a thread of its own.
pub struct DriverLease {
    stop: Arc<AtomicBool>,
    lost: watch::Receiver<bool>,
    watcher: Option<JoinHandle<()>>,
}

impl DriverLease {
    /// Blocks until this process holds the driver lock of `schema` (`Ok(Some)`), or
    /// `cancelled` turns true (`Ok(None)`). `waiting` is called once, with the PostgreSQL
    /// backend pid of the current holder, when another process holds it. Call it off any
    /// async worker thread (the client blocks on a runtime of its own).
    pub fn acquire(
        url: &str,
        schema: &str,
        cancelled: &AtomicBool,
        waiting: impl FnOnce(Option<i32>),
    ) -> Result<Option<Self>, CoordinatorError> {
        let config = postgres::Config::from_str(url)
            .map_err(|e| CoordinatorError::Config(format!("storage.url: {e}")))?;
        let mut client = config.connect(NoTls).map_err(store_err("connect"))?;
        client
            .batch_execute(KEEPALIVE)
            .map_err(store_err("keepalive"))?;
        let key = lock_key(schema);
        let mut waiting = Some(waiting);
        loop {
            let held: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map_err(store_err("try lock"))?
                .get(0);
            if held {
                return Ok(Some(Self::watch(client)));
            }
            if let Some(report) = waiting.take() {
                report(holder_pid(&mut client, key));
            }
            if cancelled.load(Ordering::Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(CHECK_EVERY);
        }
    }

    fn watch(mut client: Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (lost_tx, lost) = watch::channel(false);
        let watcher = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("gridfed-lease".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if client.simple_query("SELECT 1").is_err() {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        std::thread::park_timeout(CHECK_EVERY);
                    }
                    // Dropping the client ends the session and so releases the lock.
                })
                .ok()
        };
        if watcher.is_none() {
            // No thread to watch it: treat the lease as lost at once rather than hold it blind.
            let (tx, rx) = watch::channel(true);
            drop(tx);
            return Self {
                stop,
                lost: rx,
                watcher: None,
            };
        }
        Self {
            stop,
            lost,
            watcher,
        }
    }

    /// Resolves when the session holding the lock is gone (the database went away or
    /// terminated it): this process must stop driving rounds.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// A receiver that turns true when the lock is lost (see [`DriverLease::lost`]).
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Whether the lock is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

impl Drop for DriverLease {
    /// Releases the lock (the watcher closes its session) before returning, so a coordinator
    /// that stopped cleanly is replaced without delay.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            watcher.thread().unpark();
            let _ = watcher.join();
        }
    }
}

/// The backend pid of the session holding `key`, if it can be seen.
fn holder_pid(client: &mut Client, key: i64) -> Option<i32> {
    // An advisory lock on a bigint key shows in pg_locks as classid = high half,
    // objid = low half, objsubid = 1.
    let (high, low) = ((key >> 32) as u32, key as u32);
    client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            &[&i64::from(high), &i64::from(low)],
        )
        .ok()
        .flatten()
        .map(|row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(url: &str, schema: &str) -> Option<DriverLease> {
        let cancelled = AtomicBool::new(true);
        DriverLease::acquire(url, schema, &cancelled, |_| {}).unwrap()
    }

    #[test]
    fn one_holder_per_schema_and_released_on_drop() {
        let Some(url) = crate::storage::test_postgres_url("lease") else {
            return;
        };
        let first = acquire(&url, "unit_lease_a").expect("free lock is taken");
        assert!(!first.is_lost());
        assert!(acquire(&url, "unit_lease_a").is_none(), "second holder");
        // Another schema has its own driver.
        let other = acquire(&url, "unit_lease_b").expect("other schema");
        let mut pid = None;
        let cancelled = AtomicBool::new(true);
        let waited =
            DriverLease::acquire(&url, "unit_lease_a", &cancelled, |p| pid = Some(p)).unwrap();
        assert!(waited.is_none());
        assert!(
            matches!(pid, Some(Some(p)) if p > 0),
            "holder pid seen: {pid:?}"
        );
        drop(first);
        assert!(acquire(&url, "unit_lease_a").is_some(), "released on drop");
        drop(other);
    }

    #[test]
    fn a_terminated_session_is_reported_lost() {
        let Some(url) = crate::storage::test_postgres_url("lease lost") else {
            return;
        };
        let lease = acquire(&url, "unit_lease_c").expect("free lock is taken");
        let mut admin = postgres::Config::from_str(&url)
            .unwrap()
            .connect(NoTls)
            .unwrap();
        let pid = holder_pid(&mut admin, lock_key("unit_lease_c")).expect("holder visible");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !lease.is_lost() {
            assert!(std::time::Instant::now() < deadline, "loss not noticed");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The lock went with the session: a standby gets it.
        assert!(acquire(&url, "unit_lease_c").is_some());
    }

    #[test]
    fn keys_differ_per_schema() {
        assert_ne!(lock_key("gridfed"), lock_key("gridfed2"));
        assert_eq!(lock_key("gridfed"), lock_key("gridfed"));
    }
}
