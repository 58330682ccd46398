//! Flight SQL transactions: `BeginTransaction` opens a transaction block in an engine
//! session of its own, commands that name its id run in that session, and
//! `EndTransaction` commits or rolls it back, exactly as `BEGIN` ... `COMMIT` over
//! Postgres. Savepoints are `SAVEPOINT` / `RELEASE` / `ROLLBACK TO` in the same session.
//! Only the user who began a transaction can use it; at most [`MAX_OPEN`] are open, and
//! one left unused for [`IDLE`] (a client that went away) is rolled back when the next
//! one begins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::auth::{Caller, SharedSession};
use super::errors::{invalid, status};
use crate::engine::{Engine, QueryControl};

/// Open transactions the server keeps at most (each holds a session).
pub const MAX_OPEN: usize = 1024;
/// A transaction unused this long is abandoned: its writes are discarded.
pub const IDLE: Duration = Duration::from_secs(3600);

struct Open {
    user: String,
    session: SharedSession,
    savepoints: u64,
    used: Instant,
}

/// The open transactions, by id.
#[derive(Default)]
pub struct Transactions {
    open: parking_lot::Mutex<HashMap<Vec<u8>, Open>>,
}

/// Runs one transaction statement in `session`.
async fn run(session: &SharedSession, sql: &str) -> Result<(), Status> {
    let mut s = session.lock().await;
    let mut statements = s.parse(sql).map_err(|e| status(&e))?;
    let stmt = statements.remove(0);
    let control = QueryControl::new(CancellationToken::new(), None);
    s.execute(stmt, None, &control)
        .await
        .map_err(|e| status(&e))?;
    Ok(())
}

impl Transactions {
    /// Begins a transaction for `user`; returns its id.
    pub async fn begin(&self, engine: &Arc<Engine>, user: &str) -> Result<Vec<u8>, Status> {
        let idle: Vec<SharedSession> = {
            let mut open = self.open.lock();
            let gone: Vec<Vec<u8>> = open
                .iter()
                .filter(|(_, o)| o.used.elapsed() > IDLE)
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter()
                .filter_map(|id| open.remove(id))
                .map(|o| o.session)
                .collect()
        };
        for session in idle {
            let _ = run(&session, "ROLLBACK").await;
        }
        if self.open.lock().len() >= MAX_OPEN {
            return Err(Status::resource_exhausted(format!(
                "{MAX_OPEN} transactions are open; end some first"
            )));
        }
        let session: SharedSession = Arc::new(tokio::sync::Mutex::new(engine.session(user)));
        run(&session, "BEGIN").await?;
        let id = uuid::Uuid::new_v4().as_bytes().to_vec();
        self.open.lock().insert(
            id.clone(),
            Open {
                user: user.to_string(),
                session,
                savepoints: 0,
                used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// `caller` with its commands running in transaction `id` (none: as it was).
    pub fn caller_in(&self, caller: Caller, id: Option<&[u8]>) -> Result<Caller, Status> {
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Ok(caller);
        };
        let session = self.session(id, &caller.user)?;
        Ok(Caller {
            session: Some(session),
            ..caller
        })
    }

    fn session(&self, id: &[u8], user: &str) -> Result<SharedSession, Status> {
        match self.open.lock().get_mut(id) {
            Some(o) if o.user == user => {
                o.used = Instant::now();
                Ok(o.session.clone())
            }
            _ => Err(Status::not_found("no such transaction")),
        }
    }

    /// Commits or rolls back transaction `id`; it is gone either way.
    pub async fn end(&self, id: &[u8], user: &str, commit: bool) -> Result<(), Status> {
        let session = self.session(id, user)?;
        self.open.lock().remove(id);
        run(&session, if commit { "COMMIT" } else { "ROLLBACK" }).await
    }

    /// Sets a savepoint in transaction `id`; returns its id.
    pub async fn savepoint(&self, id: &[u8], user: &str) -> Result<Vec<u8>, Status> {
        let session = self.session(id, user)?;
        let n = {
            let mut open = self.open.lock();
            let o = open
                .get_mut(id)
                .ok_or_else(|| Status::not_found("no such transaction"))?;
            o.savepoints += 1;
            o.savepoints
        };
        run(&session, &format!("SAVEPOINT flight_{n}")).await?;
        let mut sp = id.to_vec();
        sp.extend_from_slice(&n.to_be_bytes());
        Ok(sp)
    }

    /// Releases or rolls back to a savepoint.
    pub async fn end_savepoint(
        &self,
        savepoint: &[u8],
        user: &str,
        release: bool,
    ) -> Result<(), Status> {
        if savepoint.len() < 8 {
            return Err(invalid("malformed savepoint id"));
        }
        let (id, n) = savepoint.split_at(savepoint.len() - 8);
        let n = u64::from_be_bytes(
            n.try_into()
                .map_err(|_| invalid("malformed savepoint id"))?,
        );
        let session = self.session(id, user)?;
        let sql = if release {
            format!("RELEASE SAVEPOINT flight_{n}")
        } else {
            format!("ROLLBACK TO SAVEPOINT flight_{n}")
        };
        run(&session, &sql).await
    }
}
