//! Folding a transaction's staged commits of one table into the single Delta commit it
//! publishes, and deciding whether commits that others made since the transaction's
//! snapshot conflict with it.
//!
//! Actions are handled as the JSON the log holds, so every field delta-rs wrote (file
//! statistics, deletion vectors, partition values) passes through untouched. A data file
//! is identified by its path and deletion vector: a file added and later removed inside the
//! transaction cancels out (it was never visible and is deleted after the commit), a
//! snapshot file removed stays removed.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::LakeError;

/// A data file's identity in the log: path plus deletion vector.
fn file_key(action: &Value) -> String {
    let path = action.get("path").and_then(Value::as_str).unwrap_or("");
    match action.get("deletionVector") {
        Some(dv) if !dv.is_null() => format!(
            "{path}#{}{}@{}",
            dv.get("storageType").and_then(Value::as_str).unwrap_or(""),
            dv.get("pathOrInlineDv")
                .and_then(Value::as_str)
                .unwrap_or(""),
            dv.get("offset").and_then(Value::as_i64).unwrap_or(0)
        ),
        _ => path.to_string(),
    }
}

/// A string field of an action ("" when absent).
fn text(action: &Value, field: &str) -> String {
    action
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The actions of one commit file, each `{"<kind>": {...}}`.
pub(crate) fn actions(commit: &[u8]) -> Result<Vec<(String, Value)>, LakeError> {
    let mut out = Vec::new();
    for line in commit.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| LakeError::Commit(format!("unreadable staged commit: {e}")))?;
        if let Value::Object(m) = v {
            for (k, v) in m {
                out.push((k, v));
            }
        }
    }
    Ok(out)
}

/// One table's share of a transaction, ready to publish.
#[derive(Debug, Default)]
pub(crate) struct Squashed {
    /// Snapshot files the transaction removes, by identity.
    pub removes: BTreeMap<String, Value>,
    /// Files the transaction adds and keeps, by identity.
    pub adds: BTreeMap<String, Value>,
    pub metadata: Option<Value>,
    pub protocol: Option<Value>,
    /// Application transactions, by app id.
    pub txns: BTreeMap<String, Value>,
    pub domains: BTreeMap<String, Value>,
    pub cdc: Vec<Value>,
    /// The operations of the staged commits, oldest first.
    pub commit_infos: Vec<Map<String, Value>>,
    /// Paths of files added and removed again inside the transaction.
    pub cancelled: Vec<String>,
}

impl Squashed {
    /// Folds `commits` (oldest first).
    pub(crate) fn of(commits: &[Bytes]) -> Result<Squashed, LakeError> {
        let mut s = Squashed::default();
        for c in commits {
            for (kind, action) in actions(c)? {
                match kind.as_str() {
                    "add" => {
                        s.adds.insert(file_key(&action), action);
                    }
                    "remove" => {
                        let key = file_key(&action);
                        match s.adds.remove(&key) {
                            Some(added) => {
                                if let Some(p) = added.get("path").and_then(Value::as_str) {
                                    s.cancelled.push(p.to_string());
                                }
                            }
                            None => {
                                s.removes.insert(key, action);
                            }
                        }
                    }
                    "metaData" => s.metadata = Some(action),
                    "protocol" => s.protocol = Some(action),
                    "txn" => {
                        s.txns.insert(text(&action, "appId"), action);
                    }
                    "domainMetadata" => {
                        s.domains.insert(text(&action, "domain"), action);
                    }
                    "cdc" => s.cdc.push(action),
                    "commitInfo" => {
                        if let Value::Object(m) = action {
                            s.commit_infos.push(m);
                        }
                    }
                    _ => {}
                }
            }
        }
        // A path still named by a kept add (a file given a deletion vector) stays.
        let kept: HashSet<&str> = s
            .adds
            .values()
            .filter_map(|a| a.get("path").and_then(Value::as_str))
            .collect();
        s.cancelled.retain(|p| !kept.contains(p.as_str()));
        Ok(s)
    }

    /// Whether publishing changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.removes.is_empty()
            && self.adds.is_empty()
            && self.metadata.is_none()
            && self.protocol.is_none()
            && self.txns.is_empty()
            && self.domains.is_empty()
    }

    /// Only new files: others' concurrent commits cannot conflict with it.
    fn blind_append(&self) -> bool {
        self.removes.is_empty() && self.metadata.is_none() && self.protocol.is_none()
    }

    /// The commit file: one commitInfo naming the transaction, then the actions.
    pub(crate) fn commit_bytes(&self, txn_id: &str, now_ms: i64) -> Vec<u8> {
        let info = self.commit_info(txn_id, now_ms);
        let mut lines: Vec<Value> = vec![json!({ "commitInfo": info })];
        if let Some(p) = &self.protocol {
            lines.push(json!({ "protocol": p }));
        }
        if let Some(m) = &self.metadata {
            lines.push(json!({ "metaData": m }));
        }
        for t in self.txns.values() {
            lines.push(json!({ "txn": t }));
        }
        for d in self.domains.values() {
            lines.push(json!({ "domainMetadata": d }));
        }
        for r in self.removes.values() {
            lines.push(json!({ "remove": r }));
        }
        for a in self.adds.values() {
            lines.push(json!({ "add": a }));
        }
        for c in &self.cdc {
            lines.push(json!({ "cdc": c }));
        }
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn commit_info(&self, txn_id: &str, now_ms: i64) -> Map<String, Value> {
        let mut info = if let [only] = self.commit_infos.as_slice() {
            only.clone()
        } else {
            let ops: Vec<&str> = self
                .commit_infos
                .iter()
                .filter_map(|c| c.get("operation").and_then(Value::as_str))
                .collect();
            let operation = if ops.iter().all(|o| *o == "WRITE") && !ops.is_empty() {
                "WRITE"
            } else {
                "TRANSACTION"
            };
            let mut metrics: BTreeMap<String, i64> = BTreeMap::new();
            for c in &self.commit_infos {
                if let Some(Value::Object(m)) = c.get("operationMetrics") {
                    for (k, v) in m {
                        if let Some(n) = v.as_i64() {
                            *metrics.entry(k.clone()).or_default() += n;
                        }
                    }
                }
            }
            let mut m = Map::new();
            m.insert("operation".into(), json!(operation));
            m.insert(
                "operationParameters".into(),
                json!({ "operations": serde_json::to_string(&ops).unwrap_or_default() }),
            );
            m.insert("operationMetrics".into(), json!(metrics));
            m.insert(
                "clientVersion".into(),
                json!(concat!("tidepool-", env!("CARGO_PKG_VERSION"))),
            );
            m
        };
        info.insert("timestamp".into(), json!(now_ms));
        info.insert("isBlindAppend".into(), json!(self.blind_append()));
        info.insert("tidepoolTransaction".into(), json!(txn_id));
        info.remove("readVersion");
        info
    }

    /// The commit that takes this one back: its adds removed, its removes added again.
    pub(crate) fn inverse(&self) -> Squashed {
        let now = super::now_ms();
        let mut out = Squashed::default();
        for (k, a) in &self.adds {
            let mut r = serde_json::Map::new();
            for f in ["path", "partitionValues", "size", "deletionVector", "tags"] {
                if let Some(v) = a.get(f) {
                    r.insert(f.into(), v.clone());
                }
            }
            r.insert("deletionTimestamp".into(), json!(now));
            r.insert("dataChange".into(), json!(true));
            r.insert("extendedFileMetadata".into(), json!(true));
            out.removes.insert(k.clone(), Value::Object(r));
        }
        for (k, r) in &self.removes {
            let mut a = serde_json::Map::new();
            for f in [
                "path",
                "partitionValues",
                "size",
                "deletionVector",
                "tags",
                "stats",
            ] {
                if let Some(v) = r.get(f) {
                    a.insert(f.into(), v.clone());
                }
            }
            a.entry("partitionValues").or_insert(json!({}));
            a.entry("size").or_insert(json!(0));
            a.insert("modificationTime".into(), json!(now));
            a.insert("dataChange".into(), json!(true));
            out.adds.insert(k.clone(), Value::Object(a));
        }
        let mut info = serde_json::Map::new();
        info.insert("operation".into(), json!("ROLLBACK"));
        out.commit_infos.push(info);
        out
    }

    /// Why commits others made since the snapshot (`theirs`, oldest first) conflict
    /// with this one, if they do: both removed the same file (both changed the same
    /// rows' file), or one changed the table's schema or protocol while the other
    /// changed anything.
    pub(crate) fn conflict_with(&self, theirs: &[Bytes]) -> Result<Option<String>, LakeError> {
        let mut their_data = false;
        for c in theirs {
            for (kind, action) in actions(c)? {
                match kind.as_str() {
                    "remove" => {
                        their_data = true;
                        if self.removes.contains_key(&file_key(&action)) {
                            let path = action.get("path").and_then(Value::as_str).unwrap_or("");
                            return Ok(Some(format!(
                                "a concurrent transaction changed the rows of file {path}"
                            )));
                        }
                    }
                    "add" | "cdc" => their_data = true,
                    "metaData" | "protocol" => {
                        return Ok(Some(
                            "a concurrent transaction changed the table's definition".into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if their_data && (self.metadata.is_some() || self.protocol.is_some()) {
            return Ok(Some(
                "the transaction changes the table's definition while a concurrent one wrote rows"
                    .into(),
            ));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(lines: &[Value]) -> Bytes {
        let mut s = String::new();
        for l in lines {
            s.push_str(&l.to_string());
            s.push('\n');
        }
        Bytes::from(s)
    }

    #[test]
    fn files_added_then_removed_cancel_out() {
        let c1 = commit(&[
            json!({"commitInfo": {"operation": "WRITE"}}),
            json!({"add": {"path": "a.parquet", "size": 1}}),
        ]);
        let c2 = commit(&[
            json!({"commitInfo": {"operation": "DELETE"}}),
            json!({"remove": {"path": "a.parquet"}}),
            json!({"remove": {"path": "base.parquet"}}),
            json!({"add": {"path": "b.parquet", "size": 2}}),
        ]);
        let s = Squashed::of(&[c1, c2]).unwrap();
        assert_eq!(s.adds.keys().collect::<Vec<_>>(), vec!["b.parquet"]);
        assert_eq!(s.removes.keys().collect::<Vec<_>>(), vec!["base.parquet"]);
        assert_eq!(s.cancelled, vec!["a.parquet".to_string()]);
        let bytes = s.commit_bytes("t1", 5);
        let first: Value =
            serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["commitInfo"]["operation"], "TRANSACTION");
        assert_eq!(first["commitInfo"]["tidepoolTransaction"], "t1");
    }

    #[test]
    fn removing_the_same_file_conflicts_and_appends_do_not() {
        let mine = Squashed::of(&[commit(&[json!({"remove": {"path": "f.parquet"}})])]).unwrap();
        let append = commit(&[json!({"add": {"path": "g.parquet"}})]);
        assert!(mine.conflict_with(&[append]).unwrap().is_none());
        let same = commit(&[json!({"remove": {"path": "f.parquet"}})]);
        assert!(mine.conflict_with(&[same]).unwrap().is_some());
        let schema = commit(&[json!({"metaData": {"id": "x"}})]);
        assert!(mine.conflict_with(&[schema]).unwrap().is_some());
    }
}
