//! Planned statements that write the lake: CREATE TABLE [AS], INSERT, DELETE and UPDATE
//! ([`super::dml`]), MERGE and TRUNCATE ([`super::merge`]), CREATE VIEW, CREATE
//! EXTERNAL TABLE, DROP TABLE/VIEW, CREATE/DROP SCHEMA and COPY TO. Writes and COPY are
//! heavy: they take a heavy slot and run on the [`crate::executor::Executor`].

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{
    CreateExternalTable, CreateMemoryTable, CreateView, DdlStatement, DmlStatement, LogicalPlan,
    WriteOp,
};
use datafusion::prelude::DataFrame;
use tidepool_lake::{DefinitionKind, WriteMode};

use super::output::{CommandTag, Output, count_of};
use super::{Session, Source};
use crate::EngineError;
use crate::lanes::{Lane, Slot};

impl Session {
    /// Carries out a planned lake write (a DDL, DML or COPY plan). In a transaction block,
    /// DML is staged in the block's transaction; DDL runs outside it, after committing
    /// what the block wrote ([`Session::commit_before_ddl`]).
    pub(super) async fn run_write(
        &mut self,
        plan: LogicalPlan,
        source: &Source,
        slot: Slot,
    ) -> Result<Output, EngineError> {
        let ddl = matches!(plan, LogicalPlan::Ddl(_)) || crate::alter::alter_node(&plan).is_some();
        if !ddl || self.current_txn().is_none() {
            return self.run_write_now(plan, source, slot).await;
        }
        self.commit_before_ddl().await?;
        let out =
            tidepool_lake::txn::scope(None, Box::pin(self.run_write_now(plan, source, slot))).await;
        if let Some(txn) = self.current_txn() {
            txn.unpin_unwritten().await;
        }
        out
    }

    async fn run_write_now(
        &mut self,
        plan: LogicalPlan,
        source: &Source,
        slot: Slot,
    ) -> Result<Output, EngineError> {
        if let Some(node) = crate::alter::alter_node(&plan) {
            return Ok(Output::Command(self.alter_table(node).await?));
        }
        let tag = match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                self.create_table(c, source, slot).await?
            }
            LogicalPlan::Dml(dml) => match dml.op {
                WriteOp::Insert(_) => self.insert(dml, slot).await?,
                WriteOp::Delete | WriteOp::Update => self.delete_or_update(dml, slot).await?,
                WriteOp::MergeInto(ref op) => self.merge(&dml, op, source.written_as, slot).await?,
                WriteOp::Truncate => self.truncate(&dml).await?,
                op => {
                    return Err(EngineError::NotSupported(format!("{op} on lake tables")));
                }
            },
            LogicalPlan::Ddl(DdlStatement::CreateView(v)) => self.create_view(v, source).await?,
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) => {
                self.create_external(&cmd, source).await?
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
                self.drop_relation(&d.name, d.if_exists, DefinitionKind::External, source)
                    .await?
            }
            LogicalPlan::Ddl(DdlStatement::DropView(d)) => {
                self.drop_relation(&d.name, d.if_exists, DefinitionKind::View, source)
                    .await?
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(c)) => {
                let lake = self.engine.lake();
                let name = c.schema_name.rsplit('.').next().unwrap_or(&c.schema_name);
                let exists = lake.cached_listing().schemas.contains_key(name);
                if exists && !c.if_not_exists {
                    return Err(EngineError::DuplicateSchema(name.to_string()));
                }
                lake.create_schema(name).await?;
                CommandTag::new("CREATE SCHEMA")
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(d)) => {
                let lake = self.engine.lake();
                let name = d.name.schema_name().to_string();
                if !lake.cached_listing().schemas.contains_key(&name) {
                    if !d.if_exists {
                        return Err(EngineError::UndefinedSchema(name));
                    }
                } else {
                    self.drop_schema(&name, source.cascade).await?;
                }
                CommandTag::new("DROP SCHEMA")
            }
            LogicalPlan::Ddl(other) => {
                return Err(EngineError::NotSupported(other.name().to_string()));
            }
            LogicalPlan::Copy(_) => {
                let df = DataFrame::new(self.ctx.state(), plan);
                let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
                let batches = self
                    .engine
                    .executor()
                    .run(async move { Ok(df.collect().await?) })
                    .await?;
                CommandTag::with_rows("COPY", count_of(&batches))
            }
            other => {
                return Err(EngineError::NotSupported(format!(
                    "{} as a lake write",
                    other.display()
                )));
            }
        };
        Ok(Output::Command(tag))
    }

    /// CREATE [OR REPLACE] TABLE [IF NOT EXISTS] ... [AS query].
    /// Constraints and defaults are stored with the table in the commits after its first
    /// (delta-rs creates tables with Delta's own properties only).
    async fn create_table(
        &self,
        c: CreateMemoryTable,
        source: &Source,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake().clone();
        let (schema, table) = self.resolve(&c.name)?;
        if lake.cached_listing().contains(&schema, &table) && !c.or_replace {
            if c.if_not_exists {
                return Ok(CommandTag::new("CREATE TABLE"));
            }
            return Err(EngineError::DuplicateTable(format!("{schema}.{table}")));
        }
        let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
        let mode = if c.or_replace {
            WriteMode::Replace
        } else {
            WriteMode::Create
        };
        let mut declared = source.declared.clone();
        let default_schema = self.resolve(&TableReference::bare("x"))?.0;
        crate::constraints::resolve_references(&mut declared, &default_schema, &lake).await?;
        let state = Arc::new(self.ctx.state());
        let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let input = (*c.input).clone();
        let out = self
            .engine
            .executor()
            .run(async move {
                let out = lake.write_plan(&schema, &table, input, state, mode).await?;
                if let Err(e) = lake.declare(&schema, &table, &declared).await {
                    // A constraint the lake cannot keep: no table is left behind.
                    if mode == WriteMode::Create {
                        lake.drop_table(&schema, &table).await?;
                    }
                    return Err(e.into());
                }
                Ok(out)
            })
            .await?;
        Ok(if is_ctas {
            CommandTag::with_rows("SELECT", out.rows)
        } else {
            CommandTag::new("CREATE TABLE")
        })
    }

    /// INSERT INTO a lake table.
    pub(super) async fn insert(
        &self,
        dml: DmlStatement,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake().clone();
        let (schema, table) = self.resolve(&dml.table_name)?;
        let declared = lake.declared(&schema, &table).await?;
        let input = crate::constraints::checked_input((*dml.input).clone(), &table, &declared)?;
        let state = Arc::new(self.ctx.state());
        if let Some(txn) = tidepool_lake::txn::current()
            && !reads_tables(&input)?
        {
            // In a block, rows that read nothing wait for the table's next read or COMMIT,
            // with those of the block's other such INSERTs: one file, not one per INSERT.
            let batches = DataFrame::new((*state).clone(), input).collect().await?;
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            txn.buffer(&lake, &schema, &table, batches, state).await?;
            return Ok(CommandTag::with_rows("INSERT 0", rows));
        }
        let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let out = self
            .engine
            .executor()
            .run(async move {
                Ok(lake
                    .write_plan(&schema, &table, input, state, WriteMode::Append)
                    .await?)
            })
            .await?;
        Ok(CommandTag::with_rows("INSERT 0", out.rows))
    }

    /// CREATE [OR REPLACE] VIEW: the query is kept as written.
    async fn create_view(&self, v: CreateView, source: &Source) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake();
        let (schema, name) = self.resolve(&v.name)?;
        let taken = lake.table(&schema, &name).await?.is_some()
            || (!v.or_replace
                && lake
                    .definition(DefinitionKind::View, &schema, &name)
                    .await?
                    .is_some());
        if taken {
            return Err(EngineError::DuplicateTable(format!("{schema}.{name}")));
        }
        let sql = source
            .view_query
            .as_deref()
            .ok_or_else(|| EngineError::NotSupported("this form of CREATE VIEW".to_string()))?;
        lake.put_definition(DefinitionKind::View, &schema, &name, sql)
            .await?;
        Ok(CommandTag::new("CREATE VIEW"))
    }

    /// CREATE EXTERNAL TABLE: registered now, its statement kept for other sessions.
    async fn create_external(
        &self,
        cmd: &CreateExternalTable,
        source: &Source,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake();
        let (schema, name) = self.resolve(&cmd.name)?;
        if lake.cached_listing().contains(&schema, &name) {
            if cmd.if_not_exists {
                return Ok(CommandTag::new("CREATE EXTERNAL TABLE"));
            }
            if !cmd.or_replace {
                return Err(EngineError::DuplicateTable(format!("{schema}.{name}")));
            }
        }
        crate::catalog::create_external(&self.ctx.state(), cmd).await?;
        lake.put_definition(DefinitionKind::External, &schema, &name, &source.sql)
            .await?;
        Ok(CommandTag::new("CREATE EXTERNAL TABLE"))
    }

    /// DROP TABLE (a Delta table or an external table) or DROP VIEW (`kind` names the
    /// stored definition besides the Delta table: External or View). Views that read it
    /// refuse the drop (2BP01), or go with it under CASCADE.
    async fn drop_relation(
        &self,
        name: &TableReference,
        if_exists: bool,
        kind: DefinitionKind,
        source: &Source,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake();
        let (schema, name) = self.resolve(name)?;
        let view = kind == DefinitionKind::View;
        // DROP TABLE of a view, DROP VIEW of a table: 42809 even with IF EXISTS, as in
        // PostgreSQL (dbt drops by the type its relation cache holds).
        let listing = lake.refresh().await?;
        if let Some(l) = listing.schemas.get(&schema) {
            let is_view = l.views.contains(&name);
            let is_table = l.tables.contains(&name) || l.external.contains(&name);
            if !view && is_view && !is_table {
                return Err(EngineError::WrongObjectType(format!(
                    "\"{name}\" is not a table (use DROP VIEW to remove a view)"
                )));
            }
            if view && is_table && !is_view {
                return Err(EngineError::WrongObjectType(format!(
                    "\"{name}\" is not a view (use DROP TABLE to remove a table)"
                )));
            }
        }
        if listing.contains(&schema, &name) {
            let target = BTreeSet::from([(schema.clone(), name.clone())]);
            let dependents = crate::dependents::dependent_views(lake, &target).await?;
            if !dependents.is_empty() && !source.cascade {
                let what = if view { "view" } else { "table" };
                let what = format!("{what} {schema}.{name}");
                return Err(crate::dependents::refusal(&what, &dependents));
            }
            for (s, v) in &dependents {
                lake.drop_definition(DefinitionKind::View, s, v).await?;
            }
        }
        let dropped = (!view && lake.drop_table(&schema, &name).await?)
            || lake.drop_definition(kind, &schema, &name).await?;
        if !dropped && !if_exists {
            return Err(EngineError::UndefinedTable(format!("{schema}.{name}")));
        }
        Ok(CommandTag::new(if view {
            "DROP VIEW"
        } else {
            "DROP TABLE"
        }))
    }
}

impl Session {
    /// DROP SCHEMA: one with anything in it is refused (2BP01) unless CASCADE, which drops
    /// its tables, views, external tables and procedures, and the views elsewhere that
    /// read them.
    async fn drop_schema(&self, name: &str, cascade: bool) -> Result<(), EngineError> {
        let lake = self.engine.lake();
        let listing = lake.refresh().await?;
        let Some(l) = listing.schemas.get(name) else {
            return Ok(());
        };
        let mut inside: BTreeSet<(String, String)> = BTreeSet::new();
        for n in l
            .tables
            .iter()
            .chain(&l.views)
            .chain(&l.external)
            .chain(&l.procedures)
        {
            inside.insert((name.to_string(), n.clone()));
        }
        if !inside.is_empty() && !cascade {
            let count = inside.len();
            return Err(EngineError::DependentObjects(format!(
                "cannot drop schema {name} because other objects depend on it ({count} \
                 tables, views or procedures in it); use DROP SCHEMA ... CASCADE to drop them \
                 too"
            )));
        }
        for (s, v) in crate::dependents::dependent_views(lake, &inside).await? {
            lake.drop_definition(DefinitionKind::View, &s, &v).await?;
        }
        for t in &l.tables {
            lake.drop_table(name, t).await?;
        }
        for (kind, names) in [
            (DefinitionKind::View, &l.views),
            (DefinitionKind::External, &l.external),
            (DefinitionKind::Procedure, &l.procedures),
        ] {
            for n in names {
                lake.drop_definition(kind, name, n).await?;
            }
        }
        lake.drop_schema(name).await?;
        Ok(())
    }
}

/// Whether `plan` (or a subquery in it) scans a table.
fn reads_tables(plan: &LogicalPlan) -> Result<bool, EngineError> {
    let mut scans = false;
    plan.apply_with_subqueries(|p| {
        scans |= matches!(p, LogicalPlan::TableScan(_));
        Ok(if scans {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(scans)
}
