//! Noticing that a client went away while its statement runs.
//!
//! A statement runs while the connection loop waits for it, not for the socket, so a
//! client that disconnects mid-query would otherwise be noticed only when its rows are
//! written, after all the work. Like PostgreSQL's `client_connection_check_interval`
//! (always on here), a [`Watch`] polls a duplicate of the socket's descriptor for
//! `POLLRDHUP`/`POLLHUP`/`POLLERR` every [`CHECK_EVERY`]; when the peer is gone the
//! connection loop drops the statement, which drops its execution and releases its slot.
//! Pending data (pipelined messages) does not count as gone: `POLLRDHUP` is reported
//! only once the peer has shut down its side.

use std::time::Duration;

/// How often a running statement checks its client.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);

/// A duplicate descriptor of a connection's socket, for liveness checks only.
pub struct Watch {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl Watch {
    /// Watches `socket`; without a duplicate descriptor (out of descriptors) or off
    /// Linux, [`Watch::gone`] never resolves and the client is noticed on write.
    pub fn new(socket: &tokio::net::TcpStream) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            Watch {
                fd: socket.as_fd().try_clone_to_owned().ok(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = socket;
            Watch {}
        }
    }

    /// Resolves once the peer has closed or reset the connection.
    pub async fn gone(&self) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if self.closed() {
                return;
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn closed(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let Some(fd) = &self.fd else {
            return false;
        };
        let mut fds = [PollFd::new(fd, PollFlags::RDHUP)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&now)) {
            Ok(0) => false,
            Ok(_) => fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
            Err(_) => false,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn closed(&self) -> bool {
        false
    }
}
