//! The one classification of a statement that both [`Session::execute`] and
//! [`Session::describe`] go by, so a statement is described as it runs.
//!
//! [`Session::execute`]: super::Session::execute
//! [`Session::describe`]: super::Session::describe

use datafusion::sql::parser::Statement as DFStatement;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CopyTarget, Expr, Insert, SetExpr, Statement, visit_expressions,
};

/// What a statement is, by who carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// SET, SHOW, RESET, DISCARD, CLOSE, LISTEN, UNLISTEN, DEALLOCATE: the session's own
    /// state ([`super::variables`]).
    Variable,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO ([`super::transaction`]).
    Transaction,
    /// `DECLARE name CURSOR FOR query` ([`super::cursor`]).
    Declare,
    /// `FETCH n FROM name` ([`super::cursor`]).
    Fetch,
    /// GRANT, REVOKE, CREATE/DROP POLICY, ALTER TABLE ... ROW LEVEL SECURITY: the lake's
    /// security document ([`super::security`]).
    Security,
    /// CREATE PROCEDURE, DROP PROCEDURE, CALL ([`super::procedure`]).
    Procedure,
    /// `COPY ... TO STDOUT` and `COPY ... FROM STDIN` ([`super::copy`]).
    Copy,
    /// Everything else: DataFusion plans it, then it runs as a lake write
    /// ([`super::lake`]), on a temporary table ([`super::temp`]) or as a query
    /// ([`super::query`]).
    Planned,
}

impl Kind {
    pub(super) fn of(stmt: &DFStatement) -> Kind {
        let DFStatement::Statement(s) = stmt else {
            return Kind::Planned;
        };
        match s.as_ref() {
            Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Reset(_)
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Close { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. } => Kind::Variable,
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. } => Kind::Transaction,
            Statement::Declare { .. } => Kind::Declare,
            Statement::Fetch { .. } => Kind::Fetch,
            Statement::Grant(_)
            | Statement::Revoke(_)
            | Statement::CreatePolicy(_)
            | Statement::DropPolicy(_) => Kind::Security,
            Statement::AlterTable(a)
                if !a.operations.is_empty()
                    && a.operations.iter().all(|o| {
                        matches!(
                            o,
                            AlterTableOperation::EnableRowLevelSecurity
                                | AlterTableOperation::DisableRowLevelSecurity
                                | AlterTableOperation::ForceRowLevelSecurity
                                | AlterTableOperation::NoForceRowLevelSecurity
                        )
                    }) =>
            {
                Kind::Security
            }
            Statement::CreateProcedure { .. }
            | Statement::DropProcedure { .. }
            | Statement::Call(_) => Kind::Procedure,
            Statement::Copy {
                target: CopyTarget::Stdin | CopyTarget::Stdout,
                ..
            } => Kind::Copy,
            _ => Kind::Planned,
        }
    }

    /// Whether the statement runs under the statement's cancel and deadline after
    /// waiting for the lake listing (the others only touch session or security state).
    pub(super) fn is_bounded(self) -> bool {
        matches!(self, Kind::Procedure | Kind::Planned | Kind::Copy)
    }
}

/// Whether `stmt` is an `INSERT ... VALUES` that reads no lake data: no subquery, no
/// ON CONFLICT (it reads the target) and no RETURNING. Planning it looks at the target's
/// schema and constraints only, so in a transaction it does not write out the rows other
/// such INSERTs buffered ([`tidepool_lake::txn::deferring`]).
pub(super) fn reads_no_lake_data(stmt: &DFStatement) -> bool {
    let DFStatement::Statement(s) = stmt else {
        return false;
    };
    let Statement::Insert(Insert {
        source: Some(source),
        on: None,
        returning: None,
        ..
    }) = s.as_ref()
    else {
        return false;
    };
    if source.with.is_some() || !matches!(source.body.as_ref(), SetExpr::Values(_)) {
        return false;
    }
    let subquery = visit_expressions(source.as_ref(), |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    subquery.is_continue()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> Kind {
        let parser = crate::SqlParser::new(std::sync::Arc::new(crate::NoExtension));
        Kind::of(&parser.parse(sql).unwrap().remove(0))
    }

    #[test]
    fn statements_are_classified_by_who_carries_them_out() {
        assert_eq!(kind("SET search_path = gold"), Kind::Variable);
        assert_eq!(kind("SHOW timezone"), Kind::Variable);
        assert_eq!(kind("COMMIT"), Kind::Transaction);
        assert_eq!(kind("SAVEPOINT s"), Kind::Transaction);
        assert_eq!(kind("ROLLBACK TO SAVEPOINT s"), Kind::Transaction);
        assert_eq!(kind("RELEASE SAVEPOINT s"), Kind::Transaction);
        assert_eq!(kind("DECLARE c CURSOR FOR SELECT 1"), Kind::Declare);
        assert_eq!(kind("FETCH 5 FROM c"), Kind::Fetch);
        assert_eq!(kind("GRANT SELECT ON gold.t TO bob"), Kind::Security);
        assert_eq!(
            kind("ALTER TABLE gold.t ENABLE ROW LEVEL SECURITY"),
            Kind::Security
        );
        assert_eq!(kind("ALTER TABLE gold.t RENAME TO u"), Kind::Planned);
        assert_eq!(kind("CALL gold.p(1)"), Kind::Procedure);
        assert_eq!(kind("SELECT 1"), Kind::Planned);
        assert_eq!(kind("INSERT INTO gold.t VALUES (1)"), Kind::Planned);
        assert_eq!(kind("COPY gold.t FROM STDIN (FORMAT csv)"), Kind::Copy);
        assert_eq!(kind("COPY (SELECT 1) TO STDOUT"), Kind::Copy);
        assert_eq!(kind("COPY (SELECT 1) TO '/tmp/x.parquet'"), Kind::Planned);
    }

    #[test]
    fn values_inserts_read_no_lake_data() {
        let parser = crate::SqlParser::new(std::sync::Arc::new(crate::NoExtension));
        let reads_none = |sql: &str| reads_no_lake_data(&parser.parse(sql).unwrap().remove(0));
        assert!(reads_none(
            "INSERT INTO gold.t VALUES (1, 'a'), (2, now()::text)"
        ));
        assert!(reads_none("INSERT INTO gold.t (a) VALUES ($1)"));
        assert!(!reads_none(
            "INSERT INTO gold.t VALUES ((SELECT max(a) FROM gold.t))"
        ));
        assert!(!reads_none("INSERT INTO gold.t VALUES (1) RETURNING a"));
        assert!(!reads_none(
            "INSERT INTO gold.t VALUES (1) ON CONFLICT DO NOTHING"
        ));
        assert!(!reads_none("INSERT INTO gold.t SELECT * FROM gold.u"));
        assert!(!reads_none("SELECT 1"));
    }
}
