//! What every Postgres connection shares with the listener: the engine, the shutdown
//! token, login settings, and the registry that routes a CancelRequest (pid and secret
//! key) to the connection running the statement. Connections register themselves as a
//! [`Cancellable`], so the registry knows nothing of the handler.

use std::sync::{Arc, Weak};

use pgwire::api::RandomPidSecretKeyGenerator;
use pgwire::api::auth::DefaultServerParameterProvider;
use tokio_util::sync::CancellationToken;

use super::auth::{TlsOnly, UserDirectory};
use crate::engine::Engine;

/// A connection whose running statement a CancelRequest may stop.
pub trait Cancellable: Send + Sync {
    /// Fires the cancel token of the statement running now.
    fn cancel_current(&self);
}

/// What every connection shares.
pub struct PgShared {
    pub(super) engine: Arc<Engine>,
    pub(super) cancels: CancelRegistry,
    pub(super) shutdown: CancellationToken,
    pub(super) params: Arc<DefaultServerParameterProvider>,
    pub(super) users: UserDirectory,
    pub(super) pids: Arc<RandomPidSecretKeyGenerator>,
    /// Plaintext startups are refused (`[tls]` configured), except on loopback when
    /// `plaintext_on_loopback` allows them.
    pub(super) tls_only: Option<TlsOnly>,
}

/// Connections that can be cancelled, by (pid, secret key).
#[derive(Default)]
pub struct CancelRegistry {
    conns:
        parking_lot::Mutex<std::collections::HashMap<(i32, bytes::Bytes), Weak<dyn Cancellable>>>,
}

impl CancelRegistry {
    pub(super) fn register(&self, pid: i32, key: bytes::Bytes, conn: Weak<dyn Cancellable>) {
        self.conns.lock().insert((pid, key), conn);
    }

    pub(super) fn unregister(&self, pid: i32, key: &bytes::Bytes) {
        self.conns.lock().remove(&(pid, key.clone()));
    }

    /// Cancels the running statement of the connection with this pid and key, if any.
    pub fn cancel(&self, pid: i32, key: &bytes::Bytes) -> bool {
        let conn = self
            .conns
            .lock()
            .get(&(pid, key.clone()))
            .and_then(|w| w.upgrade());
        match conn {
            Some(c) => {
                c.cancel_current();
                true
            }
            None => false,
        }
    }
}
