//! Helpers for tests that drive the `gridfed` binary as separate processes.

use std::process::Child;

/// A free loopback port (bound, read, released: good enough for a test's coordinator).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free loopback port whose successor is free too: `gridfed init` puts the coordinator's
/// dashboard and metrics on the next port, and a port taken there fails the coordinator's start.
#[allow(dead_code)] // used by tests/cli.rs only
pub fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Kills the child when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
