//! Session statements: SET, SHOW, RESET, DISCARD, CLOSE, LISTEN/UNLISTEN, DEALLOCATE and
//! the transaction statements, which touch only the session's [`SessionSettings`] and
//! cursors.
//!
//! [`SessionSettings`]: crate::SessionSettings

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ObjectName, Reset, Set, Statement, Value as SqlValue,
};
use futures::StreamExt;

use super::Session;
use super::output::{CommandTag, Output};
use crate::EngineError;

impl Session {
    /// Result columns of a session statement: `SHOW`'s one text column, none for the
    /// others.
    pub(super) fn describe_variable(
        &self,
        stmt: &Statement,
    ) -> Result<Option<SchemaRef>, EngineError> {
        let Statement::ShowVariable { variable } = stmt else {
            return Ok(None);
        };
        let name = ident_name(variable);
        let column = if name.eq_ignore_ascii_case("all") {
            "setting".to_string()
        } else {
            self.settings.get(&name)?.0
        };
        Ok(Some(crate::text_batch(&column, vec![])?.schema()))
    }

    /// Runs a session statement ([`Kind::Variable`](super::kind::Kind::Variable)).
    pub(super) fn run_variable(&mut self, stmt: &Statement) -> Result<Output, EngineError> {
        let tag = match stmt {
            Statement::Set(set) => {
                self.apply_set(set)?;
                CommandTag::new("SET")
            }
            Statement::ShowVariable { variable } => {
                let name = ident_name(variable);
                let batch = if name.eq_ignore_ascii_case("all") {
                    let all: Vec<String> = self
                        .settings
                        .all()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    crate::text_batch("setting", all)?
                } else {
                    let (display, value) = self.settings.get(&name)?;
                    crate::text_batch(&display, vec![value])?
                };
                let schema = batch.schema();
                let stream = futures::stream::iter(vec![Ok(batch)]).boxed();
                return Ok(Output::Rows {
                    stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
                    tag: "SHOW",
                });
            }
            Statement::Reset(r) => {
                match &r.reset {
                    Reset::ALL => self.settings.reset(None),
                    Reset::ConfigurationParameter(name) => {
                        self.settings.reset(Some(&object_name(name)))
                    }
                }
                self.apply_settings()?;
                CommandTag::new("RESET")
            }
            Statement::Discard { object_type } => {
                use datafusion::sql::sqlparser::ast::DiscardObject;
                match object_type {
                    DiscardObject::ALL => {
                        self.settings.reset(None);
                        self.apply_settings()?;
                        self.cursors.close_all();
                        if let Some(t) = &self.temp {
                            t.clear();
                        }
                        CommandTag::new("DISCARD ALL")
                    }
                    // No cached plans or sequences outlive a statement.
                    DiscardObject::PLANS => CommandTag::new("DISCARD PLANS"),
                    DiscardObject::SEQUENCES => CommandTag::new("DISCARD SEQUENCES"),
                    DiscardObject::TEMP => {
                        if let Some(t) = &self.temp {
                            t.clear();
                        }
                        CommandTag::new("DISCARD TEMP")
                    }
                }
            }
            // Nothing is ever notified: pool resets (Npgsql, pgbouncer) send UNLISTEN and
            // expect it to succeed.
            Statement::Close { cursor } => match cursor {
                datafusion::sql::sqlparser::ast::CloseCursor::All => {
                    self.cursors.close_all();
                    CommandTag::new("CLOSE CURSOR ALL")
                }
                datafusion::sql::sqlparser::ast::CloseCursor::Specific { name } => {
                    self.cursors.close(&crate::names::ident_text(name))?;
                    CommandTag::new("CLOSE CURSOR")
                }
            },
            Statement::LISTEN { .. } => CommandTag::new("LISTEN"),
            Statement::UNLISTEN { .. } => CommandTag::new("UNLISTEN"),
            Statement::Deallocate { .. } => CommandTag::new("DEALLOCATE"),
            other => return Err(EngineError::NotSupported(other.to_string())),
        };
        Ok(Output::Command(tag))
    }

    pub(super) fn apply_set(&mut self, set: &Set) -> Result<(), EngineError> {
        match set {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = object_name(variable);
                let value = values.iter().map(expr_text).collect::<Vec<_>>().join(", ");
                if name.starts_with("datafusion.") {
                    // Engine settings are the operator's: readers may not change them.
                    if self.engine.options().access.is_reader(&self.user) {
                        return Err(EngineError::PermissionDenied(format!(
                            "permission denied to set parameter \"{name}\""
                        )));
                    }
                    let state = self.ctx.state_ref();
                    let mut state = state.write();
                    state
                        .config_mut()
                        .options_mut()
                        .set(&name, &value)
                        .map_err(EngineError::from)?;
                    return Ok(());
                }
                self.settings.set(&name, value)?;
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    self.settings
                        .set(&object_name(&a.name), expr_text(&a.value))?;
                }
            }
            Set::SetTimeZone { value, .. } => {
                self.settings.set("timezone", expr_text(value))?;
            }
            Set::SetNames { charset_name, .. } => {
                self.settings
                    .set("client_encoding", charset_name.value.clone())?;
            }
            Set::SetTransaction {
                modes,
                session: false,
                ..
            } => self.set_isolation(modes),
            Set::SetTransaction {
                modes,
                session: true,
                ..
            } => {
                // SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ...
                for m in modes {
                    if let datafusion::sql::sqlparser::ast::TransactionMode::IsolationLevel(l) = m {
                        self.settings.set(
                            "default_transaction_isolation",
                            l.to_string().to_lowercase(),
                        )?;
                    }
                }
            }
            // Roles and session authorization are accepted; tidepool sessions have one
            // user.
            _ => {}
        }
        self.apply_settings()
    }
}

fn ident_name(parts: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    parts
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(".")
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.clone(),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a SET value: string literals without quotes, identifiers as written.
fn expr_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}
