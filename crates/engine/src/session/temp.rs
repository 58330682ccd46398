//! Temporary tables: `CREATE TEMP TABLE`, `INSERT` into one, `DROP` one, kept in memory
//! for the session under `pg_temp` ([`crate::temp_tables`]).

use std::sync::Arc;

use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;

use super::Session;
use super::output::{CommandTag, Output, count_of};
use crate::EngineError;
use crate::temp_tables::TempTables;

impl Session {
    /// Qualifies temporary tables in `stmt` and lays `pg_temp` over the catalog the first
    /// time the session creates one.
    pub(super) fn prepare_temp(&mut self, stmt: &mut DFStatement) -> Result<(), EngineError> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(());
        };
        let names = self.temp.as_ref().map(|t| t.names()).unwrap_or_default();
        let dropped_on_commit = crate::temp_tables::dropped_on_commit(s);
        if crate::temp_tables::rewrite(s, &names)? && self.temp.is_none() {
            let temp = TempTables::default();
            self.ctx = SessionContext::new_with_state(temp.overlay(self.ctx.state()));
            self.temp = Some(temp);
        }
        if let (Some(name), Some(temp)) = (dropped_on_commit, &self.temp) {
            temp.drop_at_end(&name);
        }
        Ok(())
    }

    /// Creates, fills or drops a temporary table.
    pub(super) async fn run_temp(&mut self, plan: LogicalPlan) -> Result<Output, EngineError> {
        let Some(temp) = &self.temp else {
            return Err(EngineError::UndefinedSchema(
                crate::temp_tables::TEMP_SCHEMA.to_string(),
            ));
        };
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                let name = c.name.table();
                if temp.exists(name) && !c.or_replace {
                    if c.if_not_exists {
                        return Ok(Output::Command(CommandTag::new("CREATE TABLE")));
                    }
                    return Err(EngineError::DuplicateTable(name.to_string()));
                }
                let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
                let mut schema = c.input.schema().as_arrow().clone();
                if is_ctas {
                    // Postgres columns are nullable unless declared NOT NULL.
                    let fields: Vec<_> = schema
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone().with_nullable(true))
                        .collect();
                    schema = datafusion::arrow::datatypes::Schema::new(fields);
                }
                let schema = Arc::new(schema);
                let batches = DataFrame::new(self.ctx.state(), (*c.input).clone())
                    .collect()
                    .await?;
                let batches = batches
                    .into_iter()
                    .map(|b| b.with_schema(schema.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(datafusion::error::DataFusionError::from)?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
                temp.register(name, Arc::new(table))?;
                Ok(Output::Command(if is_ctas {
                    CommandTag::with_rows("SELECT", rows as u64)
                } else {
                    CommandTag::new("CREATE TABLE")
                }))
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
                if !temp.drop(d.name.table())? && !d.if_exists {
                    return Err(EngineError::UndefinedTable(d.name.to_string()));
                }
                Ok(Output::Command(CommandTag::new("DROP TABLE")))
            }
            plan => {
                let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                Ok(Output::Command(CommandTag::with_rows(
                    "INSERT 0",
                    count_of(&batches),
                )))
            }
        }
    }
}
