//! Types as PostgreSQL reads them where DataFusion reads them otherwise: `float` and
//! `float(p)` are double precision for p in 25..=53 (and without p), real for p in
//! 1..=24; DataFusion 55 makes every `float(p)` a 32-bit float, so `pandas.to_sql`'s
//! `FLOAT(53)` columns silently lost precision (1/3 read back as 0.33333334). Applies to
//! column definitions and casts. `character` and `char` without a length are `char(1)`
//! (DataFusion refuses the first).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CharacterLength, DataType, ExactNumberInfo, Expr, Statement, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::{Rule, finish};

pub(crate) struct PostgresTypes;

impl Rule for PostgresTypes {
    fn name(&self) -> &'static str {
        "PostgreSQL types"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        if let Statement::CreateTable(t) = statement {
            for c in &mut t.columns {
                fix(&mut c.data_type);
            }
        }
        if let Statement::AlterTable(a) = statement {
            for op in &mut a.operations {
                if let AlterTableOperation::AddColumn { column_def, .. } = op {
                    fix(&mut column_def.data_type);
                }
            }
        }
        finish(statement.visit(&mut Casts))
    }
}

struct Casts;

impl VisitorMut for Casts {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if let Expr::Cast { data_type, .. } = expr {
            fix(data_type);
        }
        ControlFlow::Continue(())
    }
}

/// `t` as PostgreSQL means it, element types of arrays included.
fn fix(t: &mut DataType) {
    match t {
        DataType::Float(ExactNumberInfo::None) => *t = DataType::DoublePrecision,
        DataType::Float(ExactNumberInfo::Precision(p)) if (25..=53).contains(p) => {
            *t = DataType::DoublePrecision
        }
        DataType::Float(ExactNumberInfo::Precision(p)) if (1..=24).contains(p) => {
            *t = DataType::Real
        }
        DataType::Character(length) | DataType::Char(length) => {
            *t = DataType::Char(Some(length.take().unwrap_or(
                CharacterLength::IntegerLength {
                    length: 1,
                    unit: None,
                },
            )))
        }
        DataType::Array(inner) => {
            use datafusion::sql::sqlparser::ast::ArrayElemTypeDef;
            match inner {
                ArrayElemTypeDef::AngleBracket(e)
                | ArrayElemTypeDef::SquareBracket(e, _)
                | ArrayElemTypeDef::Parenthesis(e) => fix(e),
                ArrayElemTypeDef::None => {}
            }
        }
        _ => {}
    }
}
