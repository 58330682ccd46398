//! `ALTER TABLE` as a logical plan node, so it goes through the one planning step every
//! statement takes: [`crate::authz::plan::touches`] sees its target (a Define in the
//! table's schema, as for CREATE and DROP) and [`crate::Session`] carries it out as a
//! lake write. DataFusion 55 does not plan ALTER TABLE itself.
//!
//! What is done: `RENAME TO` (tables, views and external tables; dbt renames its
//! `__dbt_tmp` relations into place this way, views included), `ADD [COLUMN] [IF NOT
//! EXISTS] name type [NOT NULL]` (one Delta metadata commit; existing rows read NULL) and
//! `ALTER [COLUMN] c DROP NOT NULL`, `ADD [CONSTRAINT name] ...` / `DROP CONSTRAINT`
//! ([`crate::constraints`]), `ALTER [COLUMN] c SET DEFAULT e | DROP DEFAULT`, `SET (key = value, ...)` / `SET
//! TBLPROPERTIES (...)` (Delta table properties). Other
//! operations answer 0A000 before anything is written.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterSchema, AlterSchemaOperation, AlterTable, AlterTableOperation,
    ColumnOption, CommentObject, Expr as SqlExpr, ObjectName, RenameTableNameKind, SqlOption,
    Value,
};

use crate::EngineError;
use crate::names::{ident_text, reference};

/// One change to a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub enum AlterAction {
    /// `RENAME TO name` (same schema).
    RenameTo(String),
    /// `ADD COLUMN`.
    AddColumn {
        name: String,
        data_type: DataType,
        /// `varchar(n)` / `char(n)`.
        length: Option<tidepool_lake::CharLength>,
        nullable: bool,
        if_not_exists: bool,
    },
    /// `ALTER COLUMN c DROP NOT NULL`.
    DropNotNull(String),
    /// `ADD [CONSTRAINT name] PRIMARY KEY | UNIQUE | FOREIGN KEY | CHECK ...`.
    AddConstraint(tidepool_lake::Declared),
    /// `DROP CONSTRAINT [IF EXISTS] name`.
    DropConstraint { name: String, if_exists: bool },
    /// `SET (key = value, ...)` or `SET TBLPROPERTIES (...)`: Delta table properties.
    SetProperties(Vec<(String, String)>),
    /// `ALTER COLUMN c SET DEFAULT expr` (`None`: `DROP DEFAULT`).
    SetDefault {
        column: String,
        expr: Option<String>,
    },
    /// `DROP COLUMN [IF EXISTS] c, ...`, `RENAME COLUMN a TO b`, `ALTER COLUMN c TYPE t`:
    /// the table is rewritten in one commit ([`crate::session`]'s column changes).
    Columns(ColumnChange),
    /// `ALTER COLUMN c SET NOT NULL`: the rows are checked, then one metadata commit.
    SetNotNull(String),
    /// `ALTER SCHEMA name RENAME TO to` (the node's name is the schema's).
    RenameSchema(String),
    /// `COMMENT ON TABLE | VIEW | COLUMN | PROCEDURE ... IS 'text' | NULL`, planned as an
    /// ALTER of the object (the same privilege).
    Comment {
        column: Option<String>,
        procedure: bool,
        text: Option<String>,
    },
}

/// A change of a table's columns that rewrites its rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub enum ColumnChange {
    Drop {
        names: Vec<String>,
        if_exists: bool,
    },
    Rename {
        from: String,
        to: String,
    },
    Type {
        column: String,
        data_type: DataType,
        length: Option<tidepool_lake::CharLength>,
    },
}

/// `ALTER TABLE name action, ...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct AlterTableNode {
    pub name: TableReference,
    pub if_exists: bool,
    pub actions: Vec<AlterAction>,
}

static EMPTY: LazyLock<DFSchemaRef> = LazyLock::new(|| Arc::new(DFSchema::empty()));

impl UserDefinedLogicalNodeCore for AlterTableNode {
    fn name(&self) -> &str {
        "AlterTable"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &EMPTY
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AlterTable: {} {:?}", self.name, self.actions)
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        Ok(self.clone())
    }
}

/// The ALTER TABLE node of `plan`, if it is one.
pub fn alter_node(plan: &LogicalPlan) -> Option<&AlterTableNode> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<AlterTableNode>(),
        _ => None,
    }
}

/// Plans `ALTER TABLE`; column types are read as a cast to them would be.
pub fn plan(a: &AlterTable, state: &SessionState) -> Result<LogicalPlan, EngineError> {
    if a.operations.is_empty() {
        return Err(EngineError::NotSupported(
            "ALTER TABLE without an action".into(),
        ));
    }
    let mut actions = Vec::with_capacity(a.operations.len());
    let table = reference(&a.name).table().to_string();
    for op in &a.operations {
        actions.push(action(&table, op, state)?);
    }
    if actions.len() > 1
        && actions
            .iter()
            .any(|x| matches!(x, AlterAction::RenameTo(_)))
    {
        return Err(EngineError::Syntax(
            "RENAME TO cannot be combined with other ALTER TABLE actions".into(),
        ));
    }
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(AlterTableNode {
            name: reference(&a.name),
            if_exists: a.if_exists,
            actions,
        }),
    }))
}

/// Plans `ALTER SCHEMA s RENAME TO t`.
pub fn plan_schema(a: &AlterSchema) -> Result<LogicalPlan, EngineError> {
    let [AlterSchemaOperation::Rename { name: to }] = a.operations.as_slice() else {
        return Err(EngineError::NotSupported(format!("{a}")));
    };
    let from = a.name.0.last().and_then(|p| p.as_ident()).map(ident_text);
    let to = to.0.last().and_then(|p| p.as_ident()).map(ident_text);
    let (Some(from), Some(to)) = (from, to) else {
        return Err(EngineError::Syntax(format!("{a}")));
    };
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(AlterTableNode {
            name: TableReference::bare(from),
            if_exists: a.if_exists,
            actions: vec![AlterAction::RenameSchema(to)],
        }),
    }))
}

/// Plans `COMMENT ON ...` as an ALTER of the object commented on.
pub fn plan_comment(
    object_type: &CommentObject,
    object_name: &ObjectName,
    comment: &Option<String>,
    if_exists: bool,
) -> Result<LogicalPlan, EngineError> {
    let (name, column, procedure) = match object_type {
        CommentObject::Table | CommentObject::View | CommentObject::MaterializedView => {
            (object_name.clone(), None, false)
        }
        CommentObject::Procedure | CommentObject::Function => (object_name.clone(), None, true),
        CommentObject::Column => {
            let mut parts = object_name.0.clone();
            let column = parts.pop().and_then(|p| p.as_ident().map(ident_text));
            if parts.is_empty() || column.is_none() {
                return Err(EngineError::Syntax(format!(
                    "COMMENT ON COLUMN names table.column, not {object_name}"
                )));
            }
            (ObjectName(parts), column, false)
        }
        other => {
            return Err(EngineError::NotSupported(format!("COMMENT ON {other}")));
        }
    };
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(AlterTableNode {
            name: reference(&name),
            if_exists,
            actions: vec![AlterAction::Comment {
                column,
                procedure,
                text: comment.clone(),
            }],
        }),
    }))
}

fn action(
    table: &str,
    op: &AlterTableOperation,
    state: &SessionState,
) -> Result<AlterAction, EngineError> {
    match op {
        AlterTableOperation::AddConstraint { constraint, .. } => {
            match crate::constraints::added(table, constraint) {
                Some(declared) => Ok(AlterAction::AddConstraint(declared)),
                None => Err(EngineError::NotSupported(format!(
                    "ALTER TABLE ... ADD {constraint}"
                ))),
            }
        }
        AlterTableOperation::DropConstraint {
            if_exists, name, ..
        } => Ok(AlterAction::DropConstraint {
            name: ident_text(name),
            if_exists: *if_exists,
        }),
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDefault { value },
        } => Ok(AlterAction::SetDefault {
            column: ident_text(column_name),
            expr: Some(value.to_string()),
        }),
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::DropDefault,
        } => Ok(AlterAction::SetDefault {
            column: ident_text(column_name),
            expr: None,
        }),
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::To(name) | RenameTableNameKind::As(name)) = table_name;
            if name.0.len() > 1 {
                // PostgreSQL: the new name is unqualified; the table stays in its schema.
                return Err(EngineError::Syntax(format!(
                    "the new name of ALTER TABLE ... RENAME TO is a bare name, not {name}"
                )));
            }
            Ok(AlterAction::RenameTo(reference(name).table().to_string()))
        }
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            column_position: None,
            ..
        } => {
            let mut nullable = true;
            for o in &column_def.options {
                match &o.option {
                    ColumnOption::NotNull => nullable = false,
                    ColumnOption::Null => nullable = true,
                    other => {
                        return Err(EngineError::NotSupported(format!(
                            "ALTER TABLE ... ADD COLUMN with {other}"
                        )));
                    }
                }
            }
            Ok(AlterAction::AddColumn {
                name: ident_text(&column_def.name),
                data_type: type_of(&column_def.data_type.to_string(), state)?,
                length: crate::char_length::of_sql_type(&column_def.data_type),
                nullable,
                if_not_exists: *if_not_exists,
            })
        }
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::DropNotNull,
        } => Ok(AlterAction::DropNotNull(ident_text(column_name))),
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetNotNull,
        } => Ok(AlterAction::SetNotNull(ident_text(column_name))),
        AlterTableOperation::AlterColumn {
            column_name,
            op:
                AlterColumnOperation::SetDataType {
                    data_type,
                    using: None,
                    ..
                },
        } => Ok(AlterAction::Columns(ColumnChange::Type {
            column: ident_text(column_name),
            data_type: type_of(&data_type.to_string(), state)?,
            length: crate::char_length::of_sql_type(data_type),
        })),
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => Ok(AlterAction::Columns(ColumnChange::Drop {
            names: column_names.iter().map(ident_text).collect(),
            if_exists: *if_exists,
        })),
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => Ok(AlterAction::Columns(ColumnChange::Rename {
            from: ident_text(old_column_name),
            to: ident_text(new_column_name),
        })),
        AlterTableOperation::SetTblProperties {
            table_properties: options,
        }
        | AlterTableOperation::SetOptionsParens { options } => {
            let mut properties = Vec::with_capacity(options.len());
            for o in options {
                let SqlOption::KeyValue { key, value } = o else {
                    return Err(EngineError::Syntax(format!(
                        "a table property is key = value, not {o}"
                    )));
                };
                let value = match value {
                    SqlExpr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                        Value::Boolean(b) => b.to_string(),
                        Value::Number(n, _) => n.clone(),
                        other => other.to_string(),
                    },
                    SqlExpr::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                };
                properties.push((key.value.clone(), value));
            }
            Ok(AlterAction::SetProperties(properties))
        }
        other => Err(EngineError::NotSupported(format!(
            "ALTER TABLE ... {other}"
        ))),
    }
}

/// The Arrow type DataFusion gives `CAST(NULL AS sql_type)`.
fn type_of(sql_type: &str, state: &SessionState) -> Result<DataType, EngineError> {
    let empty = DFSchema::empty();
    let e = state.create_logical_expr(&format!("CAST(NULL AS {sql_type})"), &empty)?;
    Ok(e.get_type(&empty)?)
}
