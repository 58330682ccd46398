//! Bringing an open table to its newest version without listing its log.
//!
//! delta-rs's `update_incremental` lists `_delta_log/` from the table's version on; on a
//! local disk (and on S3 before `start_after`) that lists the whole folder, which grows by
//! a file per commit: a table written by 500 transactions costs 500 `statx` calls per read.
//! Delta commits are numbered without gaps and written put-if-absent, so a table at
//! version `v` is newest exactly when `<v+1>.json` does not exist. [`catch_up`] asks the
//! store for that one file (one HEAD) and lists only when it is there, or when the
//! table's own newest commit is gone (the table was dropped: listing reports it).

use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;

/// Brings `t` to its newest committed version, listing the log only when there is one.
pub(crate) async fn catch_up(t: &mut DeltaTable) -> Result<(), DeltaTableError> {
    if let Some(version) = t.version()
        && is_newest(t, version).await
    {
        return Ok(());
    }
    t.update_incremental(None).await
}

/// Whether `version` is the newest commit of `t`'s log: it exists and the next does not.
/// Any error other than "not found" answers no, so the caller lists.
async fn is_newest(t: &DeltaTable, version: u64) -> bool {
    let store = t.log_store().object_store(None);
    let commit = |v: u64| {
        t.log_store()
            .log_path()
            .clone()
            .join(format!("{v:020}.json"))
    };
    let (this, next) = (commit(version), commit(version + 1));
    let (this, next) = futures::join!(store.head(&this), store.head(&next));
    this.is_ok() && matches!(next, Err(object_store::Error::NotFound { .. }))
}
