//! Keys, constraints and column defaults of lake tables, kept with the table in its Delta
//! metadata so they travel with it (renames, copies, other processes):
//!
//! - every constraint as `tidepool.constraint.<name>` = JSON (`{"type": "primary_key",
//!   "columns": [...]}`, `unique`, `foreign_key` with the referenced table and columns,
//!   `check` with the expression as written), which is what the catalogs report;
//! - a CHECK constraint also as the Delta standard `delta.constraints.<name>` =
//!   `(expr) IS NOT FALSE`, which delta-rs, Spark and every Delta writer enforce on every
//!   write (`IS NOT FALSE` gives PostgreSQL's rule: a row passes when the check is true or
//!   NULL; Delta alone would refuse NULL);
//! - a column default as `tidepool.default.<column>` = the SQL expression.
//!
//! Primary keys and unique constraints are declared, not checked on every write (as in
//! Synapse and Databricks); `INSERT ... ON CONFLICT` and MERGE use them as the row's key.
//! NOT NULL is the column's nullability in the Delta schema.

use std::collections::HashMap;

use deltalake::DeltaTable;
use deltalake::kernel::MetadataExt;
use serde::{Deserialize, Serialize};

use crate::columns::{CHAR_TYPE_KEY, CharLength};
use crate::metadata::commit_metadata;
use crate::{Lake, LakeError};

const CONSTRAINT_KEY: &str = "tidepool.constraint.";
const DELTA_CHECK_KEY: &str = "delta.constraints.";
const DEFAULT_KEY: &str = "tidepool.default.";

/// What a constraint asks of a table's rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    /// `REFERENCES schema.table (columns)`; the rules are PostgreSQL's words
    /// (`NO ACTION`, `CASCADE`, ...), recorded for the catalogs, not carried out.
    ForeignKey {
        ref_schema: String,
        ref_table: String,
        ref_columns: Vec<String>,
        on_delete: String,
        on_update: String,
    },
    /// The expression as written.
    Check {
        expr: String,
    },
}

/// A named constraint of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct Constraint {
    #[serde(skip)]
    pub name: String,
    /// The columns it is on (none for a CHECK).
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(flatten)]
    pub kind: ConstraintKind,
}

impl Constraint {
    /// PostgreSQL's one-letter `pg_constraint.contype`.
    pub fn contype(&self) -> &'static str {
        match self.kind {
            ConstraintKind::PrimaryKey => "p",
            ConstraintKind::Unique => "u",
            ConstraintKind::ForeignKey { .. } => "f",
            ConstraintKind::Check { .. } => "c",
        }
    }

    /// `information_schema.table_constraints.constraint_type`.
    pub fn constraint_type(&self) -> &'static str {
        match self.kind {
            ConstraintKind::PrimaryKey => "PRIMARY KEY",
            ConstraintKind::Unique => "UNIQUE",
            ConstraintKind::ForeignKey { .. } => "FOREIGN KEY",
            ConstraintKind::Check { .. } => "CHECK",
        }
    }

    /// The definition as `pg_get_constraintdef` prints it: `PRIMARY KEY (id)`,
    /// `FOREIGN KEY (c) REFERENCES s.t(id)`, `CHECK ((n >= 0))`.
    pub fn definition(&self) -> String {
        let list = |c: &[String]| {
            c.iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.kind {
            ConstraintKind::PrimaryKey => format!("PRIMARY KEY ({})", list(&self.columns)),
            ConstraintKind::Unique => format!("UNIQUE ({})", list(&self.columns)),
            ConstraintKind::ForeignKey {
                ref_schema,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
            } => {
                let mut def = format!(
                    "FOREIGN KEY ({}) REFERENCES {}.{}({})",
                    list(&self.columns),
                    quote_ident(ref_schema),
                    quote_ident(ref_table),
                    list(ref_columns)
                );
                if on_update != "NO ACTION" {
                    def.push_str(&format!(" ON UPDATE {on_update}"));
                }
                if on_delete != "NO ACTION" {
                    def.push_str(&format!(" ON DELETE {on_delete}"));
                }
                def
            }
            ConstraintKind::Check { expr } => format!("CHECK (({expr}))"),
        }
    }

    /// The name PostgreSQL gives a constraint declared without one: `t_pkey`,
    /// `t_a_b_key`, `t_a_fkey`, `t_a_check` (`t_check` for a check naming no column).
    pub fn default_name(table: &str, kind: &ConstraintKind, columns: &[String]) -> String {
        let cols = if columns.is_empty() {
            String::new()
        } else {
            format!("_{}", columns.join("_"))
        };
        match kind {
            ConstraintKind::PrimaryKey => format!("{table}_pkey"),
            ConstraintKind::Unique => format!("{table}{cols}_key"),
            ConstraintKind::ForeignKey { .. } => format!("{table}{cols}_fkey"),
            ConstraintKind::Check { .. } => format!("{table}{cols}_check"),
        }
    }
}

/// A table's declared constraints and column defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd)]
pub struct Declared {
    pub constraints: Vec<Constraint>,
    /// `(column, SQL expression)`.
    pub defaults: Vec<(String, String)>,
    /// `(column, varchar(n) or char(n))`, kept in the column's field metadata.
    pub lengths: Vec<(String, CharLength)>,
}

impl Declared {
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.defaults.is_empty() && self.lengths.is_empty()
    }

    /// The declared length of `column`, if it has one.
    pub fn length_of(&self, column: &str) -> Option<CharLength> {
        self.lengths
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, l)| *l)
    }

    /// The table's primary key columns, else those of its first unique constraint.
    pub fn key(&self) -> Option<&[String]> {
        let of = |k: &ConstraintKind| {
            self.constraints
                .iter()
                .find(|c| &c.kind == k)
                .map(|c| c.columns.as_slice())
        };
        of(&ConstraintKind::PrimaryKey).or_else(|| of(&ConstraintKind::Unique))
    }

    /// The table properties that record these (the Delta CHECK keys are added by
    /// delta-rs's constraint operation, which checks the rows first).
    pub fn properties(&self) -> Result<HashMap<String, String>, LakeError> {
        let mut out = HashMap::new();
        for c in &self.constraints {
            let json = serde_json::to_string(c)
                .map_err(|e| LakeError::Commit(format!("constraint {}: {e}", c.name)))?;
            out.insert(format!("{CONSTRAINT_KEY}{}", c.name), json);
        }
        for (column, expr) in &self.defaults {
            out.insert(format!("{DEFAULT_KEY}{column}"), expr.clone());
        }
        Ok(out)
    }

    /// Reads what `configuration` (a table's metadata) declares. Constraints come in
    /// name order; entries that do not parse are skipped.
    pub fn of_configuration(configuration: &HashMap<String, String>) -> Declared {
        let mut constraints: Vec<Constraint> = configuration
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(CONSTRAINT_KEY)?;
                let mut c: Constraint = serde_json::from_str(v).ok()?;
                c.name = name.to_string();
                Some(c)
            })
            .collect();
        constraints.sort_by(|a, b| a.name.cmp(&b.name));
        let mut defaults: Vec<(String, String)> = configuration
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(DEFAULT_KEY)?.to_string(), v.clone())))
            .collect();
        defaults.sort();
        Declared {
            constraints,
            defaults,
            lengths: Vec::new(),
        }
    }

    /// What `table` declares.
    pub fn of_table(table: &DeltaTable) -> Declared {
        match table.snapshot() {
            Ok(s) => Declared {
                lengths: crate::columns::lengths_of(s.schema().as_ref()),
                ..Declared::of_configuration(s.metadata().configuration())
            },
            Err(_) => Declared::default(),
        }
    }
}

/// `name` as an SQL identifier (PostgreSQL's `quote_ident`): double-quoted unless it is a
/// plain lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl Lake {
    /// The constraints and defaults `schema.table` declares (none for a missing table).
    pub async fn declared(&self, schema: &str, table: &str) -> Result<Declared, LakeError> {
        Ok(self
            .table(schema, table)
            .await?
            .map(|t| Declared::of_table(&t))
            .unwrap_or_default())
    }

    /// Adds constraints and defaults to `schema.table`. A CHECK is first tried on every
    /// row (delta-rs's constraint operation: 23514 and nothing written when a row fails),
    /// then one metadata commit records the rest. A name already used -> 42710.
    pub async fn declare(
        &self,
        schema: &str,
        table: &str,
        declared: &Declared,
    ) -> Result<(), LakeError> {
        if declared.is_empty() {
            return Ok(());
        }
        let mut target = self.existing(schema, table).await?;
        let existing = Declared::of_table(&target);
        for c in &declared.constraints {
            if existing.constraints.iter().any(|e| e.name == c.name) {
                return Err(LakeError::DuplicateConstraint(format!(
                    "constraint \"{}\" for relation \"{table}\" already exists",
                    c.name
                )));
            }
        }
        target = add_checks(target, table, declared).await?;
        let properties = declared.properties()?;
        let lengths: HashMap<String, (String, Option<String>)> = declared
            .lengths
            .iter()
            .map(|(c, l)| {
                let value = (CHAR_TYPE_KEY.to_string(), Some(l.type_string()));
                (c.clone(), value)
            })
            .collect();
        let schema = if lengths.is_empty() {
            None
        } else {
            let current = target.snapshot()?.schema();
            Some(crate::columns::with_field_metadata(
                current.as_ref(),
                &lengths,
            )?)
        };
        commit_metadata(&target, |mut m| {
            for (k, v) in &properties {
                m = m.add_config_key(k.clone(), v.clone())?;
            }
            if let Some(schema) = &schema {
                m = m.with_schema(schema)?;
            }
            Ok(m)
        })
        .await?;
        Ok(())
    }

    /// Replaces every constraint and default of `schema.table` with `declared`'s, in one
    /// metadata commit and without trying the rows (the caller rewrites them, which
    /// checks them): how a renamed or dropped column's constraints follow it.
    pub async fn redeclare(
        &self,
        schema: &str,
        table: &str,
        declared: &Declared,
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        let mut properties = declared.properties()?;
        for c in &declared.constraints {
            if let ConstraintKind::Check { expr } = &c.kind {
                properties.insert(
                    format!("{DELTA_CHECK_KEY}{}", c.name),
                    format!("({expr}) IS NOT FALSE"),
                );
            }
        }
        commit_metadata(&target, |mut m| {
            let old: Vec<String> = m
                .configuration()
                .keys()
                .filter(|k| {
                    k.starts_with(CONSTRAINT_KEY)
                        || k.starts_with(DEFAULT_KEY)
                        || k.starts_with(DELTA_CHECK_KEY)
                })
                .cloned()
                .collect();
            for k in old {
                m = m.remove_config_key(&k)?;
            }
            for (k, v) in &properties {
                m = m.add_config_key(k.clone(), v.clone())?;
            }
            Ok(m)
        })
        .await
    }

    /// Drops the constraint `name` of `schema.table`; false when it has none of that name.
    pub async fn drop_constraint(
        &self,
        schema: &str,
        table: &str,
        name: &str,
    ) -> Result<bool, LakeError> {
        let target = self.existing(schema, table).await?;
        let declared = Declared::of_table(&target);
        if !declared.constraints.iter().any(|c| c.name == name) {
            return Ok(false);
        }
        let keys = [
            format!("{CONSTRAINT_KEY}{name}"),
            format!("{DELTA_CHECK_KEY}{name}"),
        ];
        commit_metadata(&target, |mut m| {
            for k in &keys {
                if m.configuration().contains_key(k) {
                    m = m.remove_config_key(k)?;
                }
            }
            Ok(m)
        })
        .await?;
        Ok(true)
    }

    /// Sets (`Some`) or drops (`None`) the default of `column` of `schema.table`.
    pub async fn set_default(
        &self,
        schema: &str,
        table: &str,
        column: &str,
        expr: Option<&str>,
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        let key = format!("{DEFAULT_KEY}{column}");
        commit_metadata(&target, |m| match expr {
            Some(e) => Ok(m.add_config_key(key.clone(), e.to_string())?),
            None if m.configuration().contains_key(&key) => Ok(m.remove_config_key(&key)?),
            None => Ok(m),
        })
        .await
    }
}

/// A write of delta-rs that failed its row check, as a CHECK violation when `declared`
/// has CHECK constraints (delta-rs checks them together with NOT NULL and says which rows
/// failed, not which constraint: the names are listed). Other errors pass unchanged.
pub(crate) fn violation(
    e: deltalake::DeltaTableError,
    table: &str,
    declared: &Declared,
) -> LakeError {
    let message = e.to_string();
    let checks: Vec<String> = declared
        .constraints
        .iter()
        .filter(|c| matches!(c.kind, ConstraintKind::Check { .. }))
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    if checks.is_empty() || !message.contains("failed validation check") {
        return e.into();
    }
    let rows = message
        .split_once("Preview of invalid data:")
        .map(|(_, rows)| rows.trim())
        .unwrap_or_default();
    LakeError::CheckViolation(format!(
        "new row for relation \"{table}\" violates check constraint {} or a not-null constraint\n{rows}",
        checks.join(" or ")
    ))
}

/// Makes `declared`'s CHECK constraints Delta constraints of `target` (rows tried first).
async fn add_checks(
    mut target: DeltaTable,
    table: &str,
    declared: &Declared,
) -> Result<DeltaTable, LakeError> {
    let checks: HashMap<String, String> = declared
        .constraints
        .iter()
        .filter_map(|c| match &c.kind {
            ConstraintKind::Check { expr } => {
                Some((c.name.clone(), format!("({expr}) IS NOT FALSE")))
            }
            _ => None,
        })
        .collect();
    if !checks.is_empty() {
        let mut names: Vec<String> = checks.keys().map(|n| format!("\"{n}\"")).collect();
        names.sort();
        let names = names.join(", ");
        target = target
            .add_constraint()
            .with_constraints(checks)
            .await
            .map_err(|e| {
                // delta-rs reports the rows that fail in words only.
                let message = e.to_string();
                if message.contains("failed validation check") {
                    LakeError::CheckViolation(format!(
                        "check constraint {names} of relation \"{table}\" is violated by some row ({message})"
                    ))
                } else if message.contains("Unable to convert expression") {
                    // delta-rs writes a Delta constraint from the expression it parsed
                    // and cannot print every expression back.
                    LakeError::Unsupported(
                        "this CHECK expression as a Delta constraint (delta-rs cannot store \
                         it; comparisons, arithmetic, AND/OR/NOT, IN, IS NULL and LIKE can be)"
                            .to_string(),
                    )
                } else {
                    e.into()
                }
            })?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk() -> Constraint {
        Constraint {
            name: "t_pkey".into(),
            columns: vec!["id".into()],
            kind: ConstraintKind::PrimaryKey,
        }
    }

    #[test]
    fn constraints_round_trip_through_table_properties() {
        let declared = Declared {
            constraints: vec![
                Constraint {
                    name: "t_n_check".into(),
                    columns: vec![],
                    kind: ConstraintKind::Check {
                        expr: "n >= 0".into(),
                    },
                },
                pk(),
                Constraint {
                    name: "t_c_fkey".into(),
                    columns: vec!["c".into()],
                    kind: ConstraintKind::ForeignKey {
                        ref_schema: "s".into(),
                        ref_table: "Parent".into(),
                        ref_columns: vec!["id".into()],
                        on_delete: "CASCADE".into(),
                        on_update: "NO ACTION".into(),
                    },
                },
            ],
            defaults: vec![("n".into(), "0".into())],
            lengths: vec![],
        };
        let back = Declared::of_configuration(&declared.properties().unwrap());
        assert_eq!(back.constraints.len(), 3);
        assert_eq!(back.defaults, declared.defaults);
        assert_eq!(back.key(), Some(&["id".to_string()][..]));
        let defs: Vec<String> = back.constraints.iter().map(|c| c.definition()).collect();
        assert_eq!(
            defs,
            [
                "FOREIGN KEY (c) REFERENCES s.\"Parent\"(id) ON DELETE CASCADE",
                "CHECK ((n >= 0))",
                "PRIMARY KEY (id)",
            ]
        );
    }

    #[test]
    fn unnamed_constraints_get_postgres_names() {
        let cols = ["a".to_string(), "b".to_string()];
        assert_eq!(
            Constraint::default_name("t", &ConstraintKind::Unique, &cols),
            "t_a_b_key"
        );
        assert_eq!(
            Constraint::default_name("t", &ConstraintKind::PrimaryKey, &cols),
            "t_pkey"
        );
        let check = ConstraintKind::Check { expr: "1".into() };
        assert_eq!(Constraint::default_name("t", &check, &[]), "t_check");
    }

    #[tokio::test]
    async fn a_check_is_tried_on_the_rows_and_null_passes() {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = |v: Vec<Option<i64>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap()
        };
        std::fs::create_dir_all(dir.path().join("gold/t")).unwrap();
        let url = lake.table_url("gold", "t").unwrap();
        let t = DeltaTable::try_from_url(url).await.unwrap();
        t.write(vec![batch(vec![Some(-1), None])]).await.unwrap();
        let check = |expr: &str| Declared {
            constraints: vec![Constraint {
                name: "t_n_check".into(),
                columns: vec![],
                kind: ConstraintKind::Check { expr: expr.into() },
            }],
            defaults: vec![],
            lengths: vec![],
        };
        let refused = lake.declare("gold", "t", &check("n >= 0")).await;
        assert!(
            matches!(refused, Err(LakeError::CheckViolation(_))),
            "{refused:?}"
        );
        lake.declare("gold", "t", &check("n >= -1")).await.unwrap();
        let declared = lake.declared("gold", "t").await.unwrap();
        assert_eq!(declared.constraints[0].name, "t_n_check");
        let t = lake.table("gold", "t").await.unwrap().unwrap();
        let bad = t.clone().write(vec![batch(vec![Some(-2)])]).await;
        assert!(bad.is_err(), "the check holds for later writes");
        t.write(vec![batch(vec![None, Some(5)])]).await.unwrap();
        assert!(
            lake.drop_constraint("gold", "t", "t_n_check")
                .await
                .unwrap()
        );
        assert!(lake.declared("gold", "t").await.unwrap().is_empty());
        let t = lake.table("gold", "t").await.unwrap().unwrap();
        t.write(vec![batch(vec![Some(-2)])]).await.unwrap();
    }
}
