//! Grants and row-level security, stored in the lake (`_tidepool/security/<n>.json`) so
//! every process serving it applies them. [`Store`] keeps the newest document in memory and
//! reads it again when it is older than the lake's refresh interval. A change writes the
//! next numbered version with a create-only put, so two processes changing grants at the
//! same moment cannot both write version n: the second reads the first's document and
//! applies its change again (nothing is lost).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use tidepool_lake::Lake;

/// Versions of the document: `_tidepool/security/<n>.json`, each written once.
const DIR: &str = "security";
/// Where servers before versioned documents kept it.
const LEGACY_FILE: &str = "security.json";

/// One granted privilege: `privilege` on `schema` (every table, now and later) or on
/// `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub user: String,
    pub privilege: String,
    pub schema: String,
    pub table: Option<String>,
}

/// A row-level security policy: rows of `schema.table` where `using` holds are visible to
/// `roles` (`public`: everyone) for `command` (`ALL` or `SELECT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub command: String,
    pub roles: Vec<String>,
    pub using: String,
}

/// The stored document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Tables with row-level security enabled, as `schema.table`.
    #[serde(default)]
    pub rls: Vec<String>,
}

/// Privileges a grant may name.
pub const PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"];

impl Doc {
    /// Whether a grant, a policy or the row-level security switch names `schema.table`.
    pub fn mentions(&self, schema: &str, table: &str) -> bool {
        let qualified = format!("{schema}.{table}");
        self.grants
            .iter()
            .any(|g| g.schema == schema && g.table.as_deref() == Some(table))
            || self
                .policies
                .iter()
                .any(|p| p.schema == schema && p.table == table)
            || self.rls.contains(&qualified)
    }

    /// Carries what names `schema.from` over to `schema.to` (ALTER TABLE ... RENAME TO).
    pub fn rename(&mut self, schema: &str, from: &str, to: &str) {
        for g in &mut self.grants {
            if g.schema == schema && g.table.as_deref() == Some(from) {
                g.table = Some(to.to_string());
            }
        }
        for p in &mut self.policies {
            if p.schema == schema && p.table == from {
                p.table = to.to_string();
            }
        }
        let old = format!("{schema}.{from}");
        for r in &mut self.rls {
            if *r == old {
                *r = format!("{schema}.{to}");
            }
        }
    }

    /// Carries what names schema `from` (or a table in it) over to `to` (ALTER SCHEMA
    /// ... RENAME TO).
    pub fn rename_schema(&mut self, from: &str, to: &str) {
        for g in &mut self.grants {
            if g.schema == from {
                g.schema = to.to_string();
            }
        }
        for p in &mut self.policies {
            if p.schema == from {
                p.schema = to.to_string();
            }
        }
        let prefix = format!("{from}.");
        for r in &mut self.rls {
            if let Some(table) = r.strip_prefix(&prefix) {
                *r = format!("{to}.{table}");
            }
        }
    }

    /// Whether `user` was granted `privilege` on `schema.table` (or on all of `schema`).
    pub fn granted(&self, user: &str, privilege: &str, schema: &str, table: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            g.user == user
                && g.privilege == privilege
                && g.schema == schema
                && (g.table.is_none() || g.table.as_deref() == table)
        })
    }

    /// Whether `user` holds any privilege on something in `schema`.
    pub fn any_in_schema(&self, user: &str, schema: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.user == user && g.schema == schema)
    }

    pub fn rls_enabled(&self, schema: &str, table: &str) -> bool {
        self.rls.iter().any(|t| *t == format!("{schema}.{table}"))
    }

    /// The `USING` predicates that let `user` read rows of `schema.table`.
    pub fn read_predicates(&self, user: &str, schema: &str, table: &str) -> Vec<&str> {
        self.policies
            .iter()
            .filter(|p| p.schema == schema && p.table == table)
            .filter(|p| p.command == "ALL" || p.command == "SELECT")
            .filter(|p| p.roles.iter().any(|r| r == "public" || r == user))
            .map(|p| p.using.as_str())
            .collect()
    }
}

/// The lake's security document, cached.
#[derive(Debug, Default)]
pub struct Store {
    lake: OnceLock<Arc<Lake>>,
    doc: RwLock<(Arc<Doc>, Option<Instant>)>,
    write: tokio::sync::Mutex<()>,
}

impl Store {
    /// Binds the store to its lake (once, when the engine starts).
    pub fn attach(&self, lake: Arc<Lake>) {
        let _ = self.lake.set(lake);
    }

    /// The document as last read.
    pub fn snapshot(&self) -> Arc<Doc> {
        self.doc.read().0.clone()
    }

    /// Reads the document again when it is older than the lake's refresh interval.
    pub async fn refresh(&self) -> Result<Arc<Doc>, EngineError> {
        let Some(lake) = self.lake.get() else {
            return Ok(self.snapshot());
        };
        {
            let d = self.doc.read();
            if d.1.is_some_and(|at| at.elapsed() < lake.refresh_interval()) {
                return Ok(d.0.clone());
            }
        }
        let doc = Arc::new(read(lake).await?.1);
        *self.doc.write() = (doc.clone(), Some(Instant::now()));
        Ok(doc)
    }

    /// Changes the document: reads the newest stored version, applies `change`, and
    /// writes the next version with a create-only put. When another process wrote that
    /// version first, reads again and applies `change` to its document, so no change is
    /// lost.
    pub async fn update<T>(
        &self,
        mut change: impl FnMut(&mut Doc) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(lake) = self.lake.get() else {
            return Err(EngineError::NotSupported("grants without a lake".into()));
        };
        let _one_at_a_time = self.write.lock().await;
        for _ in 0..RETRIES {
            let (version, mut doc) = read(lake).await?;
            let out = change(&mut doc)?;
            let bytes = serde_json::to_vec_pretty(&doc)
                .map_err(|e| EngineError::InvalidArgument(format!("security document: {e}")))?;
            if lake.write_meta_version(DIR, version + 1, bytes).await? {
                *self.doc.write() = (Arc::new(doc), Some(Instant::now()));
                return Ok(out);
            }
        }
        Err(tidepool_lake::LakeError::SerializationFailure(
            "grants and policies are being changed by other servers; try again".into(),
        )
        .into())
    }
}

/// Tries of a change that other processes keep overtaking.
const RETRIES: usize = 16;

/// The newest document and its version (0: none yet, or the single `security.json` that
/// servers before versioned documents wrote).
async fn read(lake: &Lake) -> Result<(u64, Doc), EngineError> {
    let parse = |bytes: &[u8], name: &str| {
        serde_json::from_slice(bytes).map_err(|e| {
            EngineError::InvalidArgument(format!("_tidepool/{name} cannot be read: {e}"))
        })
    };
    if let Some((n, bytes)) = lake.latest_meta_version(DIR).await? {
        return Ok((n, parse(&bytes, DIR)?));
    }
    match lake.read_meta(LEGACY_FILE).await? {
        None => Ok((0, Doc::default())),
        Some(bytes) => Ok((0, parse(&bytes, LEGACY_FILE)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers (two stores over one lake, each with its own lock) granting at the same
    /// time: every grant lands, none overwrites another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_from_two_servers_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let lake = |dir: &std::path::Path| {
            Lake::open(&tidepool_lake::LakeConfig {
                root: dir.display().to_string(),
                ..Default::default()
            })
            .unwrap()
        };
        // Written by an older server: the first version starts from it.
        lake(dir.path())
            .write_meta(
                LEGACY_FILE,
                br#"{"grants":[{"user":"old","privilege":"SELECT","schema":"s","table":null}]}"#
                    .to_vec(),
            )
            .await
            .unwrap();
        let (a, b) = (Arc::new(Store::default()), Arc::new(Store::default()));
        a.attach(lake(dir.path()));
        b.attach(lake(dir.path()));
        let grant = |store: Arc<Store>, user: String| async move {
            store
                .update(|doc| {
                    doc.grants.push(Grant {
                        user: user.clone(),
                        privilege: "SELECT".into(),
                        schema: "s".into(),
                        table: None,
                    });
                    Ok(())
                })
                .await
                .unwrap()
        };
        let mut tasks = Vec::new();
        for i in 0..10 {
            tasks.push(tokio::spawn(grant(a.clone(), format!("a{i}"))));
            tasks.push(tokio::spawn(grant(b.clone(), format!("b{i}"))));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (version, doc) = read(&lake(dir.path())).await.unwrap();
        assert_eq!(version, 20);
        let mut users: Vec<_> = doc.grants.iter().map(|g| g.user.clone()).collect();
        users.sort();
        assert_eq!(users.len(), 21, "{users:?}");
        assert_eq!(users[0], "a0");
        assert!(users.contains(&"old".to_string()));
    }

    #[test]
    fn a_rename_carries_grants_policies_and_the_rls_switch() {
        let grant = |table: Option<&str>| Grant {
            user: "bob".into(),
            privilege: "SELECT".into(),
            schema: "gold".into(),
            table: table.map(str::to_string),
        };
        let mut doc = Doc {
            grants: vec![grant(Some("t")), grant(None), grant(Some("other"))],
            policies: vec![Policy {
                name: "mine".into(),
                schema: "gold".into(),
                table: "t".into(),
                command: "SELECT".into(),
                roles: vec!["bob".into()],
                using: "owner = current_user".into(),
            }],
            rls: vec!["gold.t".into()],
        };
        assert!(doc.mentions("gold", "t"));
        assert!(!doc.mentions("silver", "t"));
        doc.rename("gold", "t", "u");
        assert!(!doc.mentions("gold", "t"));
        assert!(doc.granted("bob", "SELECT", "gold", Some("u")));
        assert_eq!(doc.grants[1].table, None, "a schema-wide grant stays");
        assert_eq!(doc.grants[2].table.as_deref(), Some("other"));
        assert_eq!(doc.policies[0].table, "u");
        assert!(doc.rls_enabled("gold", "u"));
    }
}
