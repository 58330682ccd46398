//! Types as PostgreSQL reads them where DataFusion reads them otherwise: `float` and
//! `float(p)` are double precision for p in 25..=53 (and without p), real for p in
//! 1..=24; DataFusion 55 makes every `float(p)` a 32-bit float, so `pandas.to_sql`'s
//! `FLOAT(53)` columns silently lost precision (1/3 read back as 0.33333334). Applies to
//! column definitions and casts. `character` and `char` without a length are `char(1)`
//! (DataFusion refuses the first). An explicit cast to `varchar(n)` or `char(n)` cuts the
//! value to n characters, as PostgreSQL's does (`'abcdef'::varchar(3)` is `abc`; only
//! storing a longer value in such a column is an error, 22001); DataFusion ignores the
//! length.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CharacterLength, DataType, ExactNumberInfo, Expr, Statement, Visit,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish};

/// The value an explicit cast to `varchar(__e2)` keeps.
pub(super) static CUT: Template = Template::new("left(CAST(__e1 AS TEXT), __e2)");
/// ... and to `char(__e2)`: blank-padded, as the column type stores it.
pub(super) static CUT_PADDED: Template =
    Template::new("rpad(left(CAST(__e1 AS TEXT), __e2), __e2)");

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
        // The cut changes the cast's operand: the select list is named first, from the
        // cast as written (`'abc'::varchar(2)` is still the column `varchar`).
        let cuts = Visit::visit(&*statement, &mut LengthCasts).is_break();
        if cuts {
            tidepool_engine::names::apply_postgres_names(statement);
        }
        finish(statement.visit(&mut Casts))
    }
}

struct Casts;

/// Finds a cast to a type with a length.
struct LengthCasts;

impl datafusion::sql::sqlparser::ast::Visitor for LengthCasts {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Cast { data_type, .. } = expr {
            let mut t = data_type.clone();
            fix(&mut t);
            if length(&t).is_some() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for Casts {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if let Expr::Cast {
            data_type,
            expr: value,
            ..
        } = expr
        {
            fix(data_type);
            if let Some(n) = length(data_type) {
                let n = Expr::value(datafusion::sql::sqlparser::ast::Value::Number(
                    n.to_string(),
                    false,
                ));
                let cut = match data_type {
                    DataType::Char(_) => &CUT_PADDED,
                    _ => &CUT,
                };
                match cut.fill(&[value, &n], &[]) {
                    Ok(cut) => **value = cut,
                    Err(e) => return ControlFlow::Break(e),
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The length of a `varchar(n)` or `char(n)` (after [`fix`]).
fn length(t: &DataType) -> Option<u64> {
    match t {
        DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::CharVarying(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::Char(Some(CharacterLength::IntegerLength { length, .. })) => Some(*length),
        _ => None,
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
