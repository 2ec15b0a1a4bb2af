//! Caps on what clients can make the coordinator hold: connections, upload bytes in memory,
//! uploads per participant, and how long an upload may stall. Listed with their defaults in
//! docs/federation.md ("Limits").

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

const MIB: u64 = 1 << 20;

/// `[limits]` of coordinator.toml.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections served at once; a connection beyond it is closed as soon as it is accepted
    /// (the process raises its open-file limit to fit).
    pub max_connections: usize,
    /// Concurrent calls (HTTP/2 streams) one connection may have open.
    pub max_streams_per_connection: u32,
    /// Upload bytes held in memory across every stream, in MiB. An upload reserves its
    /// declared size before reading it and waits (until its round's deadline) for room; one
    /// larger than the whole budget runs alone.
    pub max_inflight_upload_mib: u64,
    /// An upload that sends no data for this long is ended (`DEADLINE_EXCEEDED`) and its
    /// reservation freed: a stalled or 1-byte-at-a-time client cannot hold memory for a round.
    pub upload_idle_timeout_s: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_streams_per_connection: 64,
            max_inflight_upload_mib: 1024,
            upload_idle_timeout_s: 30,
        }
    }
}

impl ServerLimits {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_connections == 0
            || self.max_streams_per_connection == 0
            || self.max_inflight_upload_mib == 0
            || self.upload_idle_timeout_s == 0
        {
            return Err("every [limits] value must be at least 1".into());
        }
        Ok(())
    }
}

/// Admits uploads: one at a time per participant and federation, within the memory budget.
pub(crate) struct UploadGate {
    budget: Arc<Semaphore>,
    budget_mib: u32,
    active: Arc<Mutex<HashSet<(String, String)>>>,
    pub(crate) idle: Duration,
}

/// An admitted upload; dropping it returns its reservation.
pub(crate) struct UploadPass {
    _permit: OwnedSemaphorePermit,
    active: Arc<Mutex<HashSet<(String, String)>>>,
    key: (String, String),
}

impl Drop for UploadPass {
    fn drop(&mut self) {
        if let Ok(mut active) = self.active.lock() {
            active.remove(&self.key);
        }
    }
}

impl UploadGate {
    pub(crate) fn new(limits: &ServerLimits) -> Self {
        let budget_mib = u32::try_from(limits.max_inflight_upload_mib)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Self {
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            active: Arc::default(),
            idle: Duration::from_secs(limits.upload_idle_timeout_s),
        }
    }

    /// Reserves room for `bytes`, waiting at most `patience`; refuses a second concurrent
    /// upload of one participant to one federation.
    pub(crate) async fn enter(
        &self,
        participant: &str,
        federation: &str,
        bytes: u64,
        patience: Duration,
    ) -> Result<UploadPass, Status> {
        let key = (participant.to_string(), federation.to_string());
        {
            let mut active = self
                .active
                .lock()
                .map_err(|_| Status::internal("internal coordinator error"))?;
            if !active.insert(key.clone()) {
                return Err(Status::resource_exhausted(
                    "this participant already has an upload in flight to this federation",
                ));
            }
        }
        // Built before waiting, so an early return below still frees the participant's slot.
        let release = |active: &Arc<Mutex<HashSet<(String, String)>>>| {
            if let Ok(mut a) = active.lock() {
                a.remove(&key);
            }
        };
        let mib = bytes.div_ceil(MIB).clamp(1, u64::from(self.budget_mib)) as u32;
        let permit =
            match tokio::time::timeout(patience, self.budget.clone().acquire_many_owned(mib)).await
            {
                Ok(Ok(permit)) => permit,
                _ => {
                    release(&self.active);
                    return Err(Status::resource_exhausted(format!(
                        "no room for a {mib} MiB upload before the round's deadline \
                     (limits.max_inflight_upload_mib = {})",
                        self.budget_mib
                    )));
                }
            };
        Ok(UploadPass {
            _permit: permit,
            active: self.active.clone(),
            key,
        })
    }
}

/// An accepted connection holding one of [`ServerLimits::max_connections`] slots until it
/// closes.
pub(crate) struct CappedConnection {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl CappedConnection {
    /// Wraps `io` if a slot is free; `None` (the caller drops, closing it) otherwise.
    pub(crate) fn admit(io: TcpStream, slots: &Arc<Semaphore>) -> Option<Self> {
        let slot = slots.clone().try_acquire_owned().ok()?;
        Some(Self { io, _slot: slot })
    }
}

impl tonic::transport::server::Connected for CappedConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for CappedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_upload_per_participant_and_the_budget_bounds_the_rest() {
        let gate = UploadGate::new(&ServerLimits {
            max_inflight_upload_mib: 8,
            ..ServerLimits::default()
        });
        let patience = Duration::from_millis(50);
        let a = gate.enter("a", "load", 6 * MIB, patience).await.unwrap();
        // The same participant again: refused at once.
        let again = gate.enter("a", "load", MIB, patience).await.err().unwrap();
        assert_eq!(again.code(), tonic::Code::ResourceExhausted);
        // Another participant fits in what is left; a third does not, within its patience.
        let b = gate.enter("b", "load", 2 * MIB, patience).await.unwrap();
        let c = gate.enter("c", "load", MIB, patience).await.err().unwrap();
        assert!(c.message().contains("max_inflight_upload_mib"), "{c}");
        drop(a);
        // Room again, and the participant may upload again; larger than the budget runs alone.
        let c = gate.enter("c", "load", 6 * MIB, patience).await.unwrap();
        drop((b, c));
        let huge = gate.enter("a", "load", 80 * MIB, patience).await.unwrap();
        drop(huge);
        gate.enter("a", "load", MIB, patience).await.unwrap();
    }
}
