//! Carries out a planned `ALTER TABLE` ([`crate::alter`]) on the lake. A rename moves the
//! relation (a Delta table, a view or an external table: PostgreSQL lets ALTER TABLE
//! rename any of them, and dbt does) and carries its grants and row-level security
//! policies to the new name, as PostgreSQL's privileges follow the object.

use datafusion::arrow::datatypes::Field;
use tidepool_lake::DefinitionKind;

use super::Session;
use super::output::CommandTag;
use crate::EngineError;
use crate::alter::{AlterAction, AlterTableNode};

impl Session {
    pub(super) async fn alter_table(
        &self,
        node: &AlterTableNode,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake().clone();
        if let [AlterAction::RenameSchema(to)] = node.actions.as_slice() {
            return self
                .rename_schema(node.name.table(), to, node.if_exists)
                .await;
        }
        let (schema, name) = self.resolve(&node.name)?;
        if let [
            AlterAction::Comment {
                procedure: true,
                text,
                ..
            },
        ] = node.actions.as_slice()
        {
            let there = lake
                .definition(DefinitionKind::Procedure, &schema, &name)
                .await?
                .is_some();
            if there {
                lake.comment_definition(DefinitionKind::Procedure, &schema, &name, text.as_deref())
                    .await?;
            } else if !node.if_exists {
                return Err(EngineError::UndefinedFunction(format!(
                    "procedure {schema}.{name} does not exist"
                )));
            }
            return Ok(CommandTag::new("COMMENT"));
        }
        // The statement's listing (refreshed before it ran); a rename checks storage again.
        let listing = lake.listing().await?;
        let Some(listed) = listing.schemas.get(&schema).filter(|s| {
            s.tables.contains(&name) || s.views.contains(&name) || s.external.contains(&name)
        }) else {
            if node.if_exists {
                let comment = matches!(node.actions.as_slice(), [AlterAction::Comment { .. }]);
                return Ok(CommandTag::new(if comment {
                    "COMMENT"
                } else {
                    "ALTER TABLE"
                }));
            }
            return Err(EngineError::UndefinedTable(format!("{schema}.{name}")));
        };
        let is_table = listed.tables.contains(&name);
        let kind = if listed.views.contains(&name) {
            DefinitionKind::View
        } else {
            DefinitionKind::External
        };
        for action in &node.actions {
            match action {
                AlterAction::RenameSchema(_) => {
                    return Err(EngineError::Syntax(
                        "RENAME TO cannot be combined with other ALTER SCHEMA actions".into(),
                    ));
                }
                AlterAction::Comment { column, text, .. } => {
                    let text = text.as_deref();
                    match column {
                        Some(c) if is_table => lake.comment_column(&schema, &name, c, text).await?,
                        Some(_) => {
                            return Err(EngineError::NotSupported(format!(
                                "COMMENT ON COLUMN of a view or external table ({schema}.{name})"
                            )));
                        }
                        None if is_table => lake.comment_table(&schema, &name, text).await?,
                        None => {
                            lake.comment_definition(kind, &schema, &name, text).await?;
                        }
                    }
                    return Ok(CommandTag::new("COMMENT"));
                }
                AlterAction::RenameTo(to) => {
                    if is_table {
                        lake.rename_table(&schema, &name, to).await?;
                    } else {
                        lake.rename_definition(kind, &schema, &name, to).await?;
                    }
                    self.rename_security(&schema, &name, to).await?;
                    crate::dependents::rebind_views(
                        &lake,
                        (&schema, Some(&name)),
                        (&schema, Some(to)),
                    )
                    .await?;
                }
                _ if !is_table => {
                    return Err(EngineError::NotSupported(format!(
                        "ALTER TABLE ... {} on a view or external table ({schema}.{name})",
                        match action {
                            AlterAction::AddColumn { .. } => "ADD COLUMN",
                            AlterAction::DropNotNull(_) => "DROP NOT NULL",
                            AlterAction::SetNotNull(_) => "SET NOT NULL",
                            AlterAction::Columns(_) => "DROP / RENAME / ALTER COLUMN",
                            AlterAction::SetDefault { .. } => "SET DEFAULT",
                            AlterAction::SetProperties(_) => "SET (properties)",
                            _ => "ADD / DROP CONSTRAINT",
                        }
                    )));
                }
                AlterAction::AddConstraint(declared) => {
                    let mut declared = declared.clone();
                    let default_schema = self
                        .resolve(&datafusion::common::TableReference::bare("x"))?
                        .0;
                    crate::constraints::resolve_references(&mut declared, &default_schema, &lake)
                        .await?;
                    lake.declare(&schema, &name, &declared).await?;
                }
                AlterAction::DropConstraint {
                    name: constraint,
                    if_exists,
                } => {
                    if !lake.drop_constraint(&schema, &name, constraint).await? && !if_exists {
                        return Err(EngineError::UndefinedObject(format!(
                            "constraint \"{constraint}\" of relation \"{name}\" does not exist"
                        )));
                    }
                }
                AlterAction::SetDefault { column, expr } => {
                    lake.set_default(&schema, &name, column, expr.as_deref())
                        .await?;
                }
                AlterAction::AddColumn {
                    name: column,
                    data_type,
                    length,
                    nullable,
                    if_not_exists,
                } => {
                    if !nullable {
                        return Err(EngineError::NotSupported(format!(
                            "ADD COLUMN {column} ... NOT NULL: rows already in {schema}.{name} \
                             would hold NULL in it (add it nullable)"
                        )));
                    }
                    let mut field = Field::new(column, data_type.clone(), true);
                    if let Some(l) = length {
                        field = field.with_metadata(
                            [(tidepool_lake::CHAR_TYPE_KEY.to_string(), l.type_string())].into(),
                        );
                    }
                    lake.add_column(&schema, &name, field, *if_not_exists)
                        .await?;
                }
                AlterAction::SetProperties(properties) => {
                    lake.set_properties(&schema, &name, properties.iter().cloned().collect())
                        .await?;
                }
                AlterAction::DropNotNull(column) => {
                    lake.drop_not_null(&schema, &name, column).await?;
                }
                AlterAction::SetNotNull(column) => {
                    self.set_not_null(&schema, &name, column).await?;
                }
                AlterAction::Columns(change) => {
                    self.change_columns(&schema, &name, change).await?;
                }
            }
        }
        Ok(CommandTag::new("ALTER TABLE"))
    }

    /// ALTER SCHEMA from RENAME TO to: the lake's objects move, and the grants and
    /// policies on them follow.
    async fn rename_schema(
        &self,
        from: &str,
        to: &str,
        if_exists: bool,
    ) -> Result<CommandTag, EngineError> {
        let lake = self.engine.lake();
        let listing = lake.refresh().await?;
        if !listing.schemas.contains_key(from) {
            if if_exists {
                return Ok(CommandTag::new("ALTER SCHEMA"));
            }
            return Err(EngineError::UndefinedSchema(from.to_string()));
        }
        if listing.schemas.contains_key(to) {
            return Err(EngineError::DuplicateSchema(to.to_string()));
        }
        lake.rename_schema(from, to).await?;
        crate::dependents::rebind_views(lake, (from, None), (to, None)).await?;
        let store = &self.engine.options().access.security;
        store.refresh().await?;
        store
            .update(|doc| {
                doc.rename_schema(from, to);
                Ok(())
            })
            .await?;
        Ok(CommandTag::new("ALTER SCHEMA"))
    }

    /// Moves grants, policies and the row-level security switch of `schema.from` to
    /// `schema.to`.
    async fn rename_security(&self, schema: &str, from: &str, to: &str) -> Result<(), EngineError> {
        let store = &self.engine.options().access.security;
        if !store.refresh().await?.mentions(schema, from) {
            return Ok(());
        }
        store
            .update(|doc| {
                doc.rename(schema, from, to);
                Ok(())
            })
            .await
    }
}
