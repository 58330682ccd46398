//! Who gets in. Two budgets, so sockets that never log in cannot lock real clients out:
//!
//! - **Logging in**: every accepted connection is logging in until its startup completes.
//!   At most `max_startup_connections` may be; when another arrives the oldest one is
//!   dropped (a real client's handshake takes milliseconds, an idle or stalling socket is
//!   always the oldest). Each also has the startup timeout.
//! - **Sessions**: the `max_connections` slots, taken when the startup message arrives
//!   (after the TLS exchange, as PostgreSQL does), so a client over the limit reads
//!   `53300 sorry, too many clients already` in the protocol phase it expects. Cancel
//!   requests take no slot.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The budgets of one listener.
pub struct Admission {
    slots: Arc<Semaphore>,
    max_logging_in: usize,
    logging_in: Mutex<VecDeque<(u64, CancellationToken)>>,
    next: std::sync::atomic::AtomicU64,
}

/// A connection that has not logged in yet; leaves the queue when dropped.
pub struct LoggingIn {
    admission: Arc<Admission>,
    id: u64,
    /// Fires when a newer connection pushed this one out.
    pub evicted: CancellationToken,
}

impl Drop for LoggingIn {
    fn drop(&mut self) {
        self.admission
            .logging_in
            .lock()
            .retain(|(id, _)| *id != self.id);
    }
}

impl Admission {
    pub fn new(max_connections: usize, max_logging_in: usize) -> Arc<Admission> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_logging_in: max_logging_in.max(1),
            logging_in: Mutex::new(VecDeque::new()),
            next: Default::default(),
        })
    }

    /// Registers an accepted connection as logging in, pushing out the oldest one when
    /// the budget is full.
    pub fn arrive(self: &Arc<Self>) -> LoggingIn {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut queue = self.logging_in.lock();
        while queue.len() >= self.max_logging_in {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
            }
        }
        queue.push_back((id, evicted.clone()));
        drop(queue);
        LoggingIn {
            admission: self.clone(),
            id,
            evicted,
        }
    }

    /// A session slot, if one is free.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_login_is_pushed_out_and_slots_are_counted() {
        let a = Admission::new(1, 2);
        let first = a.arrive();
        let second = a.arrive();
        assert!(!first.evicted.is_cancelled());
        let third = a.arrive();
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled() && !third.evicted.is_cancelled());
        drop(second);
        let _fourth = a.arrive();
        assert!(
            !third.evicted.is_cancelled(),
            "a slot freed by a finished login"
        );
        let slot = a.slot().expect("one slot");
        assert!(a.slot().is_none());
        drop(slot);
        assert!(a.slot().is_some());
    }
}
