//! Commits that span tables, seen together by every tidepool process reading the lake.
//!
//! Delta has one log per table, so a transaction that wrote several tables publishes one
//! commit per table, one after another. Around that, the committer keeps a record in
//! `<lake>/_tidepool/txn/<id>.json`: `publishing` (with the tables) before the first
//! commit, `published` (with each table's new version) after the last. A statement that
//! reads two or more tables checks its versions against the records ([`Lake::consistent`]):
//! if it caught a transaction half published (some of its tables at or past the record's
//! version, some before), or any of a publishing transaction's tables, it is planned again
//! a moment later. Records are swept a minute after publishing; a `publishing` record older
//! than [`ABANDONED`] belongs to a committer that died and is ignored (its tables stay as
//! far as it got: each table's commit is whole, as any Delta reader sees it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::{Lake, LakeError, META_DIR};

/// How long a published record stays for readers that loaded tables before it landed.
const KEEP: Duration = Duration::from_secs(10);
/// How often one process sweeps old records.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A record still `publishing` after this belongs to a committer that is gone.
pub(crate) const ABANDONED: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Publishing,
    Published,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    state: State,
    /// `schema.table` -> the version the transaction published (once published).
    tables: BTreeMap<String, Option<u64>>,
    at_ms: i64,
}

/// Records already read, by path: (path, modified, size) and the record.
pub(crate) type RecordCache =
    parking_lot::Mutex<std::collections::HashMap<String, (RecordKey, Arc<Record>)>>;
type RecordKey = (String, chrono::DateTime<chrono::Utc>, u64);

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// What [`Lake::consistent`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Consistent,
    /// The statement saw part of a multi-table commit: plan it again.
    Retry,
}

impl Lake {
    fn record_path(&self, id: &str) -> object_store::path::Path {
        self.object_path(&format!("{META_DIR}/txn/{id}.json"))
    }

    async fn put_record(&self, id: &str, record: &Record) -> Result<(), LakeError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| LakeError::Commit(format!("transaction record: {e}")))?;
        self.store.put(&self.record_path(id), bytes.into()).await?;
        Ok(())
    }

    /// Before publishing `tables` of transaction `id`.
    pub(crate) async fn announce(&self, id: &str, tables: &[String]) -> Result<(), LakeError> {
        let record = Record {
            state: State::Publishing,
            tables: tables.iter().map(|t| (t.clone(), None)).collect(),
            at_ms: super::now_ms(),
        };
        self.put_record(id, &record).await
    }

    /// After publishing: each table's new version. Sweeps old records.
    pub(crate) async fn published(
        &self,
        id: &str,
        versions: BTreeMap<String, u64>,
    ) -> Result<(), LakeError> {
        let record = Record {
            state: State::Published,
            tables: versions.into_iter().map(|(t, v)| (t, Some(v))).collect(),
            at_ms: super::now_ms(),
        };
        self.put_record(id, &record).await?;
        self.sweep_records().await;
        Ok(())
    }

    /// Withdraws the record of a transaction that published nothing in the end.
    pub(crate) async fn withdraw(&self, id: &str) {
        let _ = self.store.delete(&self.record_path(id)).await;
    }

    async fn listed_records(&self) -> Result<Vec<object_store::ObjectMeta>, LakeError> {
        let prefix = self.object_path(&format!("{META_DIR}/txn"));
        match self.store.list(Some(&prefix)).try_collect().await {
            Ok(l) => Ok(l),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The records, each read once per version of its file (a published record never
    /// changes again, so a busy lake costs one listing per check).
    async fn records(&self) -> Result<Vec<Arc<Record>>, LakeError> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for m in self.listed_records().await? {
            let key = (m.location.to_string(), m.last_modified, m.size);
            seen.push(key.0.clone());
            if let Some((k, r)) = self.records_read.lock().get(&key.0)
                && *k == key
            {
                out.push(r.clone());
                continue;
            }
            let bytes = match self.store.get(&m.location).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
                let r = Arc::new(r);
                self.records_read
                    .lock()
                    .insert(key.0.clone(), (key, r.clone()));
                out.push(r);
            }
        }
        self.records_read.lock().retain(|k, _| seen.contains(k));
        Ok(out)
    }

    /// Deletes records past their time, by the age of their files (one listing), at most
    /// once per [`SWEEP_EVERY`]: a listing per commit would grow with the commit rate.
    async fn sweep_records(&self) {
        {
            let mut swept = self.records_swept.lock();
            if swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *swept = Some(std::time::Instant::now());
        }
        let Ok(listed) = self.listed_records().await else {
            return;
        };
        let now = chrono_now();
        for m in listed {
            let age = (now - m.last_modified).to_std().unwrap_or_default();
            if age > ABANDONED + KEEP {
                let _ = self.store.delete(&m.location).await;
            }
        }
    }

    /// Whether a statement that read `reads` (`schema`, `table`, version) saw every
    /// multi-table commit whole. One listing of the records; nothing when there are none.
    pub async fn consistent(&self, reads: &[(String, String, u64)]) -> Result<Verdict, LakeError> {
        if reads.len() < 2 {
            return Ok(Verdict::Consistent);
        }
        let read: BTreeMap<String, u64> = reads
            .iter()
            .map(|(s, t, v)| (format!("{s}.{t}"), *v))
            .collect();
        let now = super::now_ms();
        for r in self.records().await? {
            let age = Duration::from_millis(now.saturating_sub(r.at_ms).max(0) as u64);
            let touched: Vec<(&String, &Option<u64>)> = r
                .tables
                .iter()
                .filter(|(t, _)| read.contains_key(*t))
                .collect();
            match r.state {
                State::Publishing if age < ABANDONED => {
                    if touched.len() >= 2 {
                        return Ok(Verdict::Retry);
                    }
                }
                State::Publishing => {}
                State::Published => {
                    let seen = touched
                        .iter()
                        .filter(|(t, v)| v.is_some_and(|v| read[*t] >= v))
                        .count();
                    if seen > 0 && seen < touched.len() {
                        return Ok(Verdict::Retry);
                    }
                }
            }
        }
        Ok(Verdict::Consistent)
    }
}

tokio::task_local! {
    static READS: parking_lot::Mutex<Vec<(String, String, u64)>>;
}

/// Runs `fut` noting every table [`Lake::table`] resolves in it, with its version.
pub async fn recording<F: std::future::Future>(fut: F) -> (F::Output, Vec<(String, String, u64)>) {
    READS
        .scope(parking_lot::Mutex::new(Vec::new()), async {
            let out = fut.await;
            let reads = READS.with(|r| std::mem::take(&mut *r.lock()));
            (out, reads)
        })
        .await
}

/// Notes a resolved table for [`recording`] (nothing outside one).
pub(crate) fn note_read(schema: &str, table: &str, version: u64) {
    let _ = READS.try_with(|r| {
        let mut r = r.lock();
        if !r.iter().any(|(s, t, _)| s == schema && t == table) {
            r.push((schema.to_string(), table.to_string(), version));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::{Verdict, recording};
    use crate::txn::scope;

    fn reads(a: u64, b: u64) -> Vec<(String, String, u64)> {
        vec![
            ("gold".into(), "a".into(), a),
            ("gold".into(), "b".into(), b),
        ]
    }

    #[tokio::test]
    async fn a_half_published_transaction_is_not_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        assert_eq!(
            lake.consistent(&reads(1, 1)).await.unwrap(),
            Verdict::Consistent
        );
        lake.announce("t1", &["gold.a".into(), "gold.b".into()])
            .await
            .unwrap();
        assert_eq!(lake.consistent(&reads(1, 1)).await.unwrap(), Verdict::Retry);
        let versions = BTreeMap::from([("gold.a".to_string(), 2), ("gold.b".to_string(), 3)]);
        lake.published("t1", versions).await.unwrap();
        assert_eq!(lake.consistent(&reads(2, 2)).await.unwrap(), Verdict::Retry);
        assert_eq!(
            lake.consistent(&reads(2, 3)).await.unwrap(),
            Verdict::Consistent
        );
        assert_eq!(
            lake.consistent(&reads(1, 2)).await.unwrap(),
            Verdict::Consistent
        );
    }

    fn batch(id: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap()
    }

    /// A reader that checks its two tables as the engine does never sees one of a pair of
    /// tables written by one transaction without the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_see_multi_table_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        for t in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join("gold").join(t)).unwrap();
            let url = lake.table_url("gold", t).unwrap();
            let table = deltalake::DeltaTable::try_from_url(url).await.unwrap();
            table.write(vec![batch(0)]).await.unwrap();
        }
        let writer = {
            let lake = lake.clone();
            tokio::spawn(async move {
                for i in 1..=25 {
                    let txn = lake.begin();
                    scope(Some(txn.clone()), async {
                        for t in ["a", "b"] {
                            let table = lake.table("gold", t).await.unwrap().unwrap();
                            table.write(vec![batch(i)]).await.unwrap();
                        }
                    })
                    .await;
                    txn.commit(&lake).await.unwrap();
                }
            })
        };
        let mut checked = 0;
        while !writer.is_finished() {
            loop {
                let ((a, b), read) = recording(async {
                    let a = lake.table("gold", "a").await.unwrap().unwrap();
                    tokio::task::yield_now().await;
                    let b = lake.table("gold", "b").await.unwrap().unwrap();
                    (crate::file_rows(&a), crate::file_rows(&b))
                })
                .await;
                if lake.consistent(&read).await.unwrap() == Verdict::Consistent {
                    assert_eq!(
                        a, b,
                        "a reader saw one table of a transaction without the other"
                    );
                    checked += 1;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        writer.await.unwrap();
        assert!(checked > 0);
    }
}
