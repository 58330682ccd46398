//! Authorization: who may touch what, decided once on the planned statement.
//!
//! A statement is planned first; then [`plan::touches`] walks the whole logical plan (every
//! node, every subquery in every expression, EXPLAIN and EXPLAIN ANALYZE inputs, DDL and
//! DML inputs) and lists what it reads and writes: lake tables and views by their
//! resolved names, what each table function reads (it says so itself, see
//! [`guarded::Touches`]), write targets, schemas created or dropped, and every file path or
//! URL. [`Principal::check`] decides each [`Touch`]; one refusal refuses the statement with
//! 42501. Nothing here looks at SQL text, so a name's meaning (CTEs shadowing tables,
//! `search_path`, LATERAL functions) is what the planner resolved it to. Postgres, Flight
//! SQL and every internal caller reach statements through the same planning step.
//!
//! Users: without `[[users]]` (trust mode on loopback) every session may do everything,
//! files included, as before. With users, a full user (no `schemas`) may read and write
//! every lake schema; a reader (`schemas = [...]`) reads the tables and views of its
//! schemas, calls their procedures and fills its own temporary tables. Host paths and
//! object-store URLs outside the lake need a `files = [...]` prefix on the user. Writes
//! into the lake's own folders through files (COPY TO, external locations) are refused to
//! everyone; the lake is written through SQL. Views and procedures run with their
//! creator's reach: a view was checked when created; a procedure's body is checked
//! against its owner on every call.

pub mod barrier;
pub mod catalog;
pub mod guarded;
pub mod paths;
pub mod plan;
pub mod rls;
pub mod security;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::EngineError;
use super::temp_tables::TEMP_SCHEMA;

pub use paths::Location;

/// Schemas every user may read: the catalogs clients query for metadata.
pub const CATALOGS: &[&str] = &["pg_catalog", "information_schema"];

/// One thing a statement touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// Reads rows of a table or view (`SELECT`).
    Read { schema: String, table: String },
    /// Writes rows of a table (`INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`...).
    Write {
        schema: String,
        table: String,
        op: &'static str,
    },
    /// Creates, replaces, alters or drops an object in a schema.
    Define { schema: String, what: String },
    /// Creates or drops a schema, or changes the database.
    Database { what: String },
    /// Calls a procedure.
    Execute { schema: String, name: String },
    /// Reads or writes a host path or URL.
    File { location: String, write: bool },
    /// Something the walk could not tell: refused to all but the server itself.
    Unknown(String),
}

/// What one user may do, as configured.
#[derive(Debug, Clone, Default)]
pub struct UserRights {
    /// `Some`: a reader of these schemas; `None`: a full user.
    pub schemas: Option<BTreeSet<String>>,
    /// Path and URL prefixes outside the lake.
    pub files: Vec<String>,
}

/// The server's access rules: its users and its lake.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Users are configured: files and URLs outside the lake need a grant.
    pub enforced: bool,
    pub users: BTreeMap<String, UserRights>,
    /// The lake root (`file:///...` or `s3://bucket/prefix/`), ending in `/`.
    pub lake_root: Option<String>,
    /// GRANTs and row-level security, as stored in the lake.
    pub security: Arc<security::Store>,
}

/// Privileges a reader holds on what it may read; writes and DDL stay with full users.
const READ_PRIVILEGES: &[&str] = &["SELECT", "USAGE", "EXECUTE", "CONNECT", "TEMPORARY", "TEMP"];

/// The name the server's own sessions (models, deployment, admin reads) run as.
pub const SERVER_USER: &str = "tidepool";

impl Access {
    /// The schemas `user` may read, when it is a reader limited to some.
    pub fn reader_schemas(&self, user: &str) -> Option<&BTreeSet<String>> {
        self.users.get(user).and_then(|u| u.schemas.as_ref())
    }

    /// Whether `user` is a reader (`schemas = [...]`).
    pub fn is_reader(&self, user: &str) -> bool {
        self.reader_schemas(user).is_some()
    }

    /// The principal a session of `user` acts as.
    pub fn principal(&self, user: &str) -> Arc<Principal> {
        let rights = match self.users.get(user) {
            _ if !self.enforced => Rights::Trusted,
            Some(u) => match &u.schemas {
                Some(s) => Rights::Reader {
                    schemas: s.clone(),
                    files: u.files.clone(),
                },
                None => Rights::Full {
                    files: u.files.clone(),
                },
            },
            None if user == SERVER_USER => Rights::Trusted,
            // Not a configured user (cannot log in): nothing beyond the catalogs.
            None => Rights::Reader {
                schemas: BTreeSet::new(),
                files: Vec::new(),
            },
        };
        Arc::new(Principal {
            user: user.to_string(),
            rights,
            lake_root: self.lake_root.clone(),
            security: self.security.clone(),
        })
    }

    /// Whether `user` holds `privilege` on an object of `schema` (None: the database, or
    /// an object given by oid), as the `has_*_privilege` functions answer it.
    pub fn holds(
        &self,
        user: &str,
        schema: Option<&str>,
        table: Option<&str>,
        privilege: &str,
    ) -> bool {
        let Some(allowed) = self.reader_schemas(user) else {
            return true;
        };
        let privilege = privilege.trim().to_ascii_uppercase();
        let privilege = privilege
            .strip_suffix(" WITH GRANT OPTION")
            .unwrap_or(&privilege);
        if let Some(s) = schema {
            let doc = self.security.snapshot();
            if doc.grants.iter().any(|g| {
                g.user == user
                        && g.schema == s
                        && g.privilege == privilege
                        // a table's grant answers for that table only
                        && (g.table.is_none() || g.table.as_deref() == table)
            }) {
                return true;
            }
        }
        if !READ_PRIVILEGES.contains(&privilege) {
            return false;
        }
        match schema {
            Some(s) => allowed.contains(s) || CATALOGS.contains(&s),
            None => true,
        }
    }
}

#[derive(Debug, Clone)]
enum Rights {
    /// The server itself, or any session in trust mode: everything but writes into the
    /// lake's own folders.
    Trusted,
    Full {
        files: Vec<String>,
    },
    Reader {
        schemas: BTreeSet<String>,
        files: Vec<String>,
    },
}

/// Who a statement runs as; kept in the session's DataFusion config so table functions
/// can refuse before they read anything.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    rights: Rights,
    lake_root: Option<String>,
    security: Arc<security::Store>,
}

impl Principal {
    /// The server's own principal: views and deployed procedures run as it.
    pub fn server() -> Arc<Principal> {
        Arc::new(Principal {
            user: SERVER_USER.to_string(),
            rights: Rights::Trusted,
            lake_root: None,
            security: Arc::default(),
        })
    }

    /// Whether row-level security policies filter what this principal reads (readers);
    /// full users own the lake's tables and see every row, as owners do in Postgres.
    pub fn filtered_by_policies(&self) -> bool {
        matches!(self.rights, Rights::Reader { .. })
    }

    /// The security document in force.
    pub fn security(&self) -> Arc<security::Doc> {
        self.security.snapshot()
    }

    /// Whether this principal may do everything in the lake (trust mode or the server).
    pub fn is_trusted(&self) -> bool {
        matches!(self.rights, Rights::Trusted)
    }

    /// Refuses `touches` with 42501 at the first one this principal may not do.
    pub fn check_all<'a>(
        &self,
        touches: impl IntoIterator<Item = &'a Touch>,
    ) -> Result<(), EngineError> {
        for t in touches {
            self.check(t)?;
        }
        Ok(())
    }

    /// Refuses `touch` with 42501 when this principal may not do it.
    pub fn check(&self, touch: &Touch) -> Result<(), EngineError> {
        if let Touch::File { location, write } = touch {
            return self.check_file(location, *write);
        }
        let (schemas, what) = match &self.rights {
            Rights::Trusted | Rights::Full { .. } => match touch {
                Touch::Unknown(what) if !self.is_trusted() => (None, what.clone()),
                _ => return Ok(()),
            },
            Rights::Reader { schemas, .. } => match touch {
                Touch::Read { schema, table } => {
                    if readable(schemas, schema, table)
                        || self.security.snapshot().granted(
                            &self.user,
                            "SELECT",
                            schema,
                            Some(table),
                        )
                    {
                        return Ok(());
                    }
                    (Some(schemas), format!("table {schema}.{table}"))
                }
                Touch::Write { schema, table, op } => {
                    if schema == TEMP_SCHEMA {
                        return Ok(());
                    }
                    let doc = self.security.snapshot();
                    let granted = doc.granted(&self.user, op, schema, Some(table));
                    if granted && doc.rls_enabled(schema, table) {
                        return Err(EngineError::PermissionDenied(format!(
                            "permission denied for {op} on table {schema}.{table}: row-level security is enabled on it, and only its owners write it"
                        )));
                    }
                    if granted {
                        return Ok(());
                    }
                    (Some(schemas), format!("{op} on table {schema}.{table}"))
                }
                Touch::Define { schema, what } => {
                    if schema == TEMP_SCHEMA {
                        return Ok(());
                    }
                    (Some(schemas), format!("{what} in schema {schema}"))
                }
                Touch::Database { what } => (Some(schemas), what.clone()),
                Touch::Execute { schema, name } => {
                    if schemas.contains(schema)
                        || self
                            .security
                            .snapshot()
                            .granted(&self.user, "SELECT", schema, None)
                    {
                        return Ok(());
                    }
                    (Some(schemas), format!("procedure {schema}.{name}"))
                }
                Touch::Unknown(what) | Touch::File { location: what, .. } => {
                    (Some(schemas), what.clone())
                }
            },
        };
        let user = &self.user;
        Err(EngineError::PermissionDenied(match schemas {
            Some(s) => format!(
                "permission denied for {what} (user {user} may read {})",
                if s.is_empty() {
                    "no schema".to_string()
                } else {
                    s.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
            None => format!("permission denied for {what}"),
        }))
    }

    fn check_file(&self, location: &str, write: bool) -> Result<(), EngineError> {
        let user = &self.user;
        let loc = Location::parse(location).map_err(EngineError::PermissionDenied)?;
        let verb = if write { "write" } else { "read" };
        if let Some(root) = &self.lake_root
            && let Some(inside) = loc.inside(root)
        {
            if write {
                return Err(EngineError::PermissionDenied(format!(
                    "permission denied to write \"{location}\": it is inside the lake, which is written through SQL only"
                )));
            }
            // A table's files read as that table; the lake's own folders need a full user.
            let touch = match inside.as_slice() {
                [schema, table, ..] if !schema.starts_with('_') && !table.starts_with('_') => {
                    Touch::Read {
                        schema: schema.clone(),
                        table: table.clone(),
                    }
                }
                _ => Touch::Unknown(format!("the lake's own files (\"{location}\")")),
            };
            return match &self.rights {
                Rights::Reader { .. } => self.check(&touch),
                _ => Ok(()),
            };
        }
        let files = match &self.rights {
            Rights::Trusted => return Ok(()),
            Rights::Full { files } | Rights::Reader { files, .. } => files,
        };
        if files
            .iter()
            .filter_map(|p| Location::parse(p).ok())
            .any(|prefix| loc.within(&prefix))
        {
            return Ok(());
        }
        Err(EngineError::PermissionDenied(format!(
            "permission denied to {verb} \"{location}\": user {user} holds no file grant covering it (files = [...] on its [[users]] entry)"
        )))
    }
}

/// Whether a reader of `schemas` may read `schema.table`.
fn readable(schemas: &BTreeSet<String>, schema: &str, table: &str) -> bool {
    schemas.contains(schema)
        || CATALOGS.contains(&schema)
        || schema == TEMP_SCHEMA
        // `information_schema.routines` and friends, as the parser redirects them.
        || (schema == "system"
            && (crate::system::INFORMATION_SCHEMA_VIEWS.contains(&table)
                || catalog::CATALOG_VIEWS.contains(&table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        let mut users = BTreeMap::new();
        users.insert(
            "bi".to_string(),
            UserRights {
                schemas: Some(["gold".to_string()].into_iter().collect()),
                files: Vec::new(),
            },
        );
        users.insert(
            "eng".to_string(),
            UserRights {
                schemas: None,
                files: vec!["/data/landing/".into(), "s3://landing/in/".into()],
            },
        );
        Access {
            enforced: true,
            users,
            lake_root: Some("file:///lake/".into()),
            security: Arc::default(),
        }
    }

    fn read(s: &str, t: &str) -> Touch {
        Touch::Read {
            schema: s.into(),
            table: t.into(),
        }
    }

    fn file(l: &str, write: bool) -> Touch {
        Touch::File {
            location: l.into(),
            write,
        }
    }

    #[test]
    fn readers_read_their_schemas_and_the_catalogs() {
        let bi = access().principal("bi");
        assert!(bi.check(&read("gold", "t")).is_ok());
        assert!(bi.check(&read("pg_catalog", "pg_class")).is_ok());
        assert!(bi.check(&read("system", "columns")).is_ok());
        assert!(bi.check(&read("system", "runs")).is_err());
        assert!(bi.check(&read("silver", "t")).is_err());
        let write = Touch::Write {
            schema: "gold".into(),
            table: "t".into(),
            op: "INSERT",
        };
        assert!(bi.check(&write).is_err());
        assert!(access().principal("eng").check(&write).is_ok());
    }

    #[test]
    fn files_need_a_prefix_and_the_lake_is_never_written_as_files() {
        let eng = access().principal("eng");
        assert!(eng.check(&file("/data/landing/a.csv", false)).is_ok());
        assert!(eng.check(&file("/data/landing/x/*.csv", true)).is_ok());
        assert!(eng.check(&file("/data/landing2/a.csv", false)).is_err());
        assert!(
            eng.check(&file("/data/landing/../../etc/passwd", false))
                .is_err()
        );
        assert!(eng.check(&file("file:///etc/hostname", false)).is_err());
        assert!(eng.check(&file("s3://landing/in/k.parquet", false)).is_ok());
        assert!(
            eng.check(&file("s3://landing/out/k.parquet", false))
                .is_err()
        );
        assert!(eng.check(&file("s3://other/in/k.parquet", false)).is_err());
        assert!(
            eng.check(&file("/lake/gold/t/part-0.parquet", false))
                .is_ok()
        );
        assert!(eng.check(&file("/lake/_tidepool/x", true)).is_err());
        let bi = access().principal("bi");
        assert!(bi.check(&file("/lake/gold/t/", false)).is_ok());
        assert!(bi.check(&file("/lake/silver/t/", false)).is_err());
        assert!(bi.check(&file("/lake/_tidepool/views", false)).is_err());
        let trusted = Access::default().principal("anyone");
        assert!(trusted.check(&file("/etc/hostname", false)).is_ok());
        let server = Principal::server();
        assert!(server.check(&file("/tmp/x.csv", true)).is_ok());
    }

    #[test]
    fn privileges_as_has_table_privilege_answers_them() {
        let a = access();
        assert!(a.holds("bi", Some("gold"), None, "select"));
        assert!(a.holds("bi", Some("pg_catalog"), None, "SELECT"));
        assert!(!a.holds("bi", Some("silver"), None, "SELECT"));
        assert!(!a.holds("bi", Some("gold"), None, "INSERT"));
        assert!(a.holds("eng", Some("silver"), None, "DELETE"));
    }
}
