//! Transaction blocks: `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `ROLLBACK TO
//! SAVEPOINT`, `RELEASE SAVEPOINT`, with PostgreSQL's rules.
//!
//! Between BEGIN and COMMIT, lake writes are staged in a [`tidepool_lake::txn::Txn`] and
//! published together at COMMIT (one Delta commit per table written), or not at all.
//! Reads see each table as of its first read in the block plus the block's own writes
//! (snapshot isolation per table). An error in the block fails it: every later statement
//! answers 25P02 until ROLLBACK (COMMIT then rolls back too) or a ROLLBACK TO SAVEPOINT.
//! Cursors declared in a rolled-back block (or after the savepoint rolled back to) close,
//! held or not; temporary tables return to how they were. DDL (CREATE, DROP, ALTER,
//! views, schemas) is not transactional: it commits what the block wrote first (an
//! implicit commit, as in MySQL and Oracle) and runs at once. READ COMMITTED (the
//! default) reads tables the block has not written at their newest version in each
//! statement; REPEATABLE READ and SERIALIZABLE read each as of its first read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{Statement, TransactionIsolationLevel, TransactionMode};
use futures::TryStreamExt;
use tidepool_lake::txn::{Savepoint, Txn};

use super::Session;
use super::output::{CommandTag, Output, SplitOutput, TxEffect};
use crate::EngineError;
use crate::temp_tables::TempSnapshot;

/// Where a transaction block can return to.
struct Mark {
    name: String,
    lake: Savepoint,
    cursors: u64,
    temp: Option<TempSnapshot>,
}

/// How a block reads tables it has not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Each statement reads the newest committed version (PostgreSQL's default).
    ReadCommitted,
    /// The block reads each table as of its first read (REPEATABLE READ; SERIALIZABLE is
    /// taken as this: snapshot isolation).
    RepeatableRead,
}

impl Isolation {
    fn of(modes: &[TransactionMode]) -> Option<Isolation> {
        modes.iter().rev().find_map(|m| match m {
            TransactionMode::IsolationLevel(
                TransactionIsolationLevel::ReadUncommitted
                | TransactionIsolationLevel::ReadCommitted,
            ) => Some(Isolation::ReadCommitted),
            TransactionMode::IsolationLevel(_) => Some(Isolation::RepeatableRead),
            TransactionMode::AccessMode(_) => None,
        })
    }

    /// From a `default_transaction_isolation` value.
    fn named(value: &str) -> Isolation {
        match value.trim().to_ascii_lowercase().as_str() {
            "repeatable read" | "serializable" => Isolation::RepeatableRead,
            _ => Isolation::ReadCommitted,
        }
    }
}

/// An open transaction block.
pub(crate) struct Transaction {
    pub(super) txn: Arc<Txn>,
    isolation: Isolation,
    /// An error happened: only ROLLBACK (or ROLLBACK TO) is accepted.
    pub(super) failed: bool,
    /// Set by a result stream of the block that failed after its statement returned.
    streamed_failure: Arc<AtomicBool>,
    begin: Mark,
    savepoints: Vec<Mark>,
}

/// Where a session stands, as PostgreSQL's ReadyForQuery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InBlock,
    Failed,
}

impl Session {
    /// Whether the session is in a transaction block, and whether that block failed.
    pub fn transaction_status(&self) -> TxStatus {
        match &self.tx {
            None => TxStatus::Idle,
            Some(t) if t.failed || t.streamed_failure.load(Ordering::Relaxed) => TxStatus::Failed,
            Some(_) => TxStatus::InBlock,
        }
    }

    /// Marks the open block failed (an error the protocol layer raised for it).
    pub fn fail_transaction(&mut self) {
        if let Some(t) = &mut self.tx {
            t.failed = true;
        }
    }

    /// In a block, `out`'s rows fail the block if they end in an error, as any error in
    /// the block does.
    pub(super) fn watch_rows(&self, out: SplitOutput) -> SplitOutput {
        let Some(tx) = &self.tx else {
            return out;
        };
        let watch = |stream: SendableRecordBatchStream| -> SendableRecordBatchStream {
            let flag = tx.streamed_failure.clone();
            let schema = stream.schema();
            Box::pin(RecordBatchStreamAdapter::new(
                schema,
                stream.inspect_err(move |_| flag.store(true, Ordering::Relaxed)),
            ))
        };
        match out {
            SplitOutput::One(Output::Rows { stream, tag }) => SplitOutput::One(Output::Rows {
                stream: watch(stream),
                tag,
            }),
            SplitOutput::One(Output::CopyOut { stream, options }) => {
                SplitOutput::One(Output::CopyOut {
                    stream: watch(stream),
                    options,
                })
            }
            SplitOutput::Partitions(parts) => {
                SplitOutput::Partitions(parts.into_iter().map(watch).collect())
            }
            other => other,
        }
    }

    /// The transaction statements run in, if a block is open.
    pub(crate) fn current_txn(&self) -> Option<Arc<Txn>> {
        self.tx.as_ref().map(|t| t.txn.clone())
    }

    async fn mark(&self, name: &str, lake: Savepoint) -> Result<Mark, EngineError> {
        let temp = match &self.temp {
            Some(t) => Some(t.snapshot(&self.ctx.state()).await?),
            None => None,
        };
        Ok(Mark {
            name: name.to_string(),
            lake,
            cursors: self.cursors.mark(),
            temp,
        })
    }

    /// Puts cursors and temporary tables back as they were at `mark`.
    fn restore(&mut self, cursors: u64, temp: Option<&TempSnapshot>) -> Result<(), EngineError> {
        self.cursors.close_since(cursors);
        if let Some(t) = &self.temp {
            match temp {
                Some(s) => t.restore(s)?,
                None => t.clear(),
            }
        }
        Ok(())
    }

    /// Runs a [`super::kind::Kind::Transaction`] statement.
    pub(super) async fn run_transaction(&mut self, s: &Statement) -> Result<Output, EngineError> {
        let tag = match s {
            Statement::StartTransaction { modes, .. } => {
                if self.tx.is_none() {
                    let txn = self.engine.lake().begin();
                    let begin = self.mark("", Savepoint::default()).await?;
                    let isolation = Isolation::of(modes).unwrap_or_else(|| {
                        self.settings
                            .get("default_transaction_isolation")
                            .map(|(_, v)| Isolation::named(&v))
                            .unwrap_or(Isolation::ReadCommitted)
                    });
                    self.tx = Some(Transaction {
                        isolation,
                        txn,
                        failed: false,
                        streamed_failure: Arc::default(),
                        begin,
                        savepoints: Vec::new(),
                    });
                }
                CommandTag::ending("BEGIN", TxEffect::Begin)
            }
            Statement::Commit { .. } => {
                let Some(tx) = self.tx.take() else {
                    // No block (PostgreSQL warns); cursors without HOLD still close.
                    self.cursors.end_transaction();
                    if let Some(t) = &self.temp {
                        t.transaction_ended();
                    }
                    return Ok(Output::Command(CommandTag::ending("COMMIT", TxEffect::End)));
                };
                if tx.failed || tx.streamed_failure.load(Ordering::Relaxed) {
                    self.abandon(tx).await?;
                    return Ok(Output::Command(CommandTag::ending(
                        "ROLLBACK",
                        TxEffect::End,
                    )));
                }
                let committed = tx.txn.commit(self.engine.lake()).await;
                self.cursors.end_transaction();
                if let Some(t) = &self.temp {
                    t.transaction_ended();
                }
                if let Err(e) = committed {
                    self.abandon(tx).await?;
                    return Err(e.into());
                }
                CommandTag::ending("COMMIT", TxEffect::End)
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                match self.tx.take() {
                    Some(tx) => self.abandon(tx).await?,
                    None => self.cursors.end_transaction(),
                }
                CommandTag::ending("ROLLBACK", TxEffect::End)
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let name = crate::names::ident_text(name);
                let tx = self.tx.as_mut().ok_or_else(|| {
                    EngineError::NoActiveTransaction("ROLLBACK TO SAVEPOINT".into())
                })?;
                let Some(at) = tx.savepoints.iter().rposition(|m| m.name == name) else {
                    tx.failed = true;
                    return Err(EngineError::UndefinedSavepoint(name));
                };
                tx.savepoints.truncate(at + 1);
                tx.failed = false;
                tx.streamed_failure.store(false, Ordering::Relaxed);
                let txn = tx.txn.clone();
                let mark = &tx.savepoints[at];
                let (lake, cursors, temp) = (mark.lake.clone(), mark.cursors, mark.temp.clone());
                txn.rollback_to(&lake).await?;
                self.restore(cursors, temp.as_ref())?;
                CommandTag::new("ROLLBACK")
            }
            Statement::Savepoint { name } => {
                let name = crate::names::ident_text(name);
                let Some(tx) = &self.tx else {
                    return Err(EngineError::NoActiveTransaction("SAVEPOINT".into()));
                };
                if self.transaction_status() == TxStatus::Failed {
                    return Err(EngineError::InFailedTransaction);
                }
                let lake = tx.txn.savepoint(self.engine.lake()).await?;
                let mark = self.mark(&name, lake).await?;
                if let Some(tx) = &mut self.tx {
                    tx.savepoints.push(mark);
                }
                CommandTag::new("SAVEPOINT")
            }
            Statement::ReleaseSavepoint { name } => {
                let name = crate::names::ident_text(name);
                let tx = self
                    .tx
                    .as_mut()
                    .ok_or_else(|| EngineError::NoActiveTransaction("RELEASE SAVEPOINT".into()))?;
                if tx.failed || tx.streamed_failure.load(Ordering::Relaxed) {
                    return Err(EngineError::InFailedTransaction);
                }
                let Some(at) = tx.savepoints.iter().rposition(|m| m.name == name) else {
                    tx.failed = true;
                    return Err(EngineError::UndefinedSavepoint(name));
                };
                tx.savepoints.truncate(at);
                CommandTag::new("RELEASE")
            }
            other => {
                return Err(EngineError::NotSupported(format!(
                    "{other} as a transaction statement"
                )));
            }
        };
        Ok(Output::Command(tag))
    }

    /// Ends `tx` without publishing: staged writes, cursors declared in it and changes
    /// to temporary tables are undone.
    async fn abandon(&mut self, tx: Transaction) -> Result<(), EngineError> {
        let rolled = tx.txn.rollback().await;
        self.restore(tx.begin.cursors, tx.begin.temp.as_ref())?;
        self.cursors.end_transaction();
        if let Some(t) = &self.temp {
            t.transaction_ended();
        }
        rolled.map_err(EngineError::from)
    }

    /// `SET TRANSACTION ISOLATION LEVEL ...` in a block.
    pub(super) fn set_isolation(&mut self, modes: &[TransactionMode]) {
        if let (Some(tx), Some(level)) = (&mut self.tx, Isolation::of(modes)) {
            tx.isolation = level;
        }
    }

    /// Before each statement of a READ COMMITTED block: tables it has not written are
    /// read at their newest committed version again.
    pub(super) async fn next_statement(&self) {
        if let Some(tx) = &self.tx
            && tx.isolation == Isolation::ReadCommitted
        {
            tx.txn.unpin_unwritten().await;
        }
    }

    /// DDL is not transactional: in a block that has written, it first commits the
    /// block's writes (an implicit commit, as MySQL and Oracle do) and the block goes on
    /// in a fresh transaction; the caller then runs the DDL outside the block. A failed
    /// implicit commit fails the block.
    pub(super) async fn commit_before_ddl(&mut self) -> Result<(), EngineError> {
        let Some(tx) = &mut self.tx else {
            return Ok(());
        };
        if tx.txn.has_writes().await {
            if let Err(e) = tx.txn.commit(self.engine.lake()).await {
                let _ = tx.txn.rollback().await;
                tx.failed = true;
                return Err(e.into());
            }
            tx.txn = self.engine.lake().begin();
            tx.savepoints.clear();
        } else {
            tx.txn.unpin_unwritten().await;
        }
        Ok(())
    }
}
