//! What is in force, where clients look: `information_schema.table_privileges` (grants,
//! as `system.table_privileges`) and `pg_catalog.pg_policies` (policies, as
//! `system.pg_policies`), read from the lake's security document.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};

use crate::system::AsyncSystemTable;
use crate::{CATALOG, Engine};

/// System tables every user may read (catalog views).
pub const CATALOG_VIEWS: &[&str] = &["table_privileges", "pg_policies"];

fn text_table(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<RecordBatch> {
    let schema = text_schema(columns);
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|c| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[c].clone()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

const PRIVILEGE_COLUMNS: &[&str] = &[
    "grantor",
    "grantee",
    "table_catalog",
    "table_schema",
    "table_name",
    "privilege_type",
    "is_grantable",
    "with_hierarchy",
];

const POLICY_COLUMNS: &[&str] = &[
    "schemaname",
    "tablename",
    "policyname",
    "permissive",
    "roles",
    "cmd",
    "qual",
    "with_check",
];

#[derive(Debug)]
pub struct CatalogView {
    pub engine: Weak<Engine>,
    pub policies: bool,
}

#[async_trait]
impl AsyncSystemTable for CatalogView {
    fn schema(&self) -> SchemaRef {
        text_schema(if self.policies {
            POLICY_COLUMNS
        } else {
            PRIVILEGE_COLUMNS
        })
    }

    async fn rows(&self, _session: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| DataFusionError::Plan("the server is shutting down".into()))?;
        let store = &engine.options().access.security;
        let doc = store
            .refresh()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if self.policies {
            let rows = doc
                .policies
                .iter()
                .map(|p| {
                    vec![
                        Some(p.schema.clone()),
                        Some(p.table.clone()),
                        Some(p.name.clone()),
                        Some("PERMISSIVE".into()),
                        Some(format!("{{{}}}", p.roles.join(","))),
                        Some(p.command.clone()),
                        Some(p.using.clone()),
                        None,
                    ]
                })
                .collect();
            return text_table(POLICY_COLUMNS, rows);
        }
        // Grants on a schema are listed for each of its tables, as Postgres lists them.
        let listing = engine
            .lake()
            .listing()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut rows = Vec::new();
        for g in &doc.grants {
            let tables = match &g.table {
                Some(t) => vec![t.clone()],
                None => listing.names(&g.schema),
            };
            for t in tables {
                rows.push(vec![
                    Some("tidepool".into()),
                    Some(g.user.clone()),
                    Some(CATALOG.into()),
                    Some(g.schema.clone()),
                    Some(t),
                    Some(g.privilege.clone()),
                    Some("NO".into()),
                    Some("NO".into()),
                ]);
            }
        }
        text_table(PRIVILEGE_COLUMNS, rows)
    }
}

/// Publishes the views in `system`.
pub fn register(engine: &Arc<Engine>) {
    for (name, policies) in [("table_privileges", false), ("pg_policies", true)] {
        engine.system.register_gathered(
            name,
            Arc::new(CatalogView {
                engine: Arc::downgrade(engine),
                policies,
            }),
        );
    }
}

/// The `aclitem` letter of a privilege, as `pg_class.relacl` writes it.
fn acl_letter(privilege: &str) -> Option<char> {
    Some(match privilege {
        "SELECT" => 'r',
        "INSERT" => 'a',
        "UPDATE" => 'w',
        "DELETE" => 'd',
        "TRUNCATE" => 'D',
        _ => return None,
    })
}

/// `pg_class.relacl` of `schema.table`: one `user=letters/tidepool` item per user holding
/// a privilege on it by a grant (on the table or its schema) or as a reader of its schema,
/// in user order; empty when nobody but the full users (owners) may touch it.
pub fn table_acl(
    access: &super::Access,
    doc: &super::security::Doc,
    schema: &str,
    table: &str,
) -> Vec<String> {
    let mut held: std::collections::BTreeMap<&str, std::collections::BTreeSet<char>> =
        Default::default();
    for (user, rights) in &access.users {
        if rights.schemas.as_ref().is_some_and(|s| s.contains(schema)) {
            held.entry(user).or_default().insert('r');
        }
    }
    for g in &doc.grants {
        if g.schema == schema
            && g.table.as_deref().is_none_or(|t| t == table)
            && let Some(letter) = acl_letter(&g.privilege)
        {
            held.entry(&g.user).or_default().insert(letter);
        }
    }
    const ORDER: &str = "arwdD";
    held.into_iter()
        .map(|(user, letters)| {
            let letters: String = ORDER.chars().filter(|c| letters.contains(c)).collect();
            format!("{user}={letters}/{}", super::SERVER_USER)
        })
        .collect()
}
