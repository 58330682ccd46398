//! PostgreSQL's system views that clients read and the bundled catalog lacks, defined
//! as PostgreSQL defines them, over the catalogs tidepool answers: `pg_indexes` (DuckDB's
//! `ATTACH ... (TYPE postgres)` reads it for every schema), `pg_user` (Npgsql's
//! `GetSchema("Users")`), `pg_stat_activity` (the session itself: tidepool keeps no
//! registry of other backends, so a client sees its own row, as a non-superuser in
//! PostgreSQL sees other users' rows without their query), `pg_stat_database` and
//! `pg_stat_user_indexes` (counters tidepool does not keep are 0 or NULL, as after a
//! statistics reset), `pg_user_mappings` (psql's `\deu`: none), `pg_parameter_acl`
//! (`\dconfig+`: none). [`crate::catalog_views`] puts the query where the view is named.

use datafusion::sql::sqlparser::ast::Query;

/// The views, by name, with PostgreSQL 15's columns.
const VIEWS: &[(&str, &str)] = &[
    (
        "pg_indexes",
        "SELECT n.nspname AS schemaname, c.relname AS tablename, i.relname AS indexname, \
         CAST(NULL AS TEXT) AS tablespace, pg_get_indexdef(i.oid) AS indexdef \
         FROM pg_catalog.pg_index AS x \
         JOIN pg_catalog.pg_class AS c ON c.oid = x.indrelid \
         JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid \
         LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm', 'p') AND i.relkind IN ('i', 'I')",
    ),
    (
        "pg_user",
        "SELECT r.rolname AS usename, r.oid AS usesysid, r.rolcreatedb AS usecreatedb, \
         r.rolsuper AS usesuper, r.rolreplication AS userepl, \
         r.rolbypassrls AS usebypassrls, '********' AS passwd, \
         r.rolvaliduntil AS valuntil, r.rolconfig AS useconfig \
         FROM pg_catalog.pg_roles AS r WHERE r.rolcanlogin",
    ),
    (
        "pg_stat_activity",
        "SELECT d.oid AS datid, d.datname, pg_backend_pid() AS pid, \
         CAST(NULL AS INT) AS leader_pid, r.oid AS usesysid, current_user AS usename, \
         current_setting('application_name') AS application_name, \
         CAST(NULL AS TEXT) AS client_addr, CAST(NULL AS TEXT) AS client_hostname, \
         CAST(NULL AS INT) AS client_port, now() AS backend_start, now() AS xact_start, \
         now() AS query_start, now() AS state_change, \
         CAST(NULL AS TEXT) AS wait_event_type, CAST(NULL AS TEXT) AS wait_event, \
         'active' AS state, CAST(NULL AS TEXT) AS backend_xid, \
         CAST(NULL AS TEXT) AS backend_xmin, CAST(NULL AS BIGINT) AS query_id, \
         '' AS query, 'client backend' AS backend_type \
         FROM pg_catalog.pg_database AS d \
         LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname = current_user \
         WHERE d.datname = current_database()",
    ),
    (
        "pg_stat_database",
        "SELECT d.oid AS datid, d.datname, CAST(1 AS INT) AS numbackends, \
         CAST(0 AS BIGINT) AS xact_commit, CAST(0 AS BIGINT) AS xact_rollback, \
         CAST(0 AS BIGINT) AS blks_read, CAST(0 AS BIGINT) AS blks_hit, \
         CAST(0 AS BIGINT) AS tup_returned, CAST(0 AS BIGINT) AS tup_fetched, \
         CAST(0 AS BIGINT) AS tup_inserted, CAST(0 AS BIGINT) AS tup_updated, \
         CAST(0 AS BIGINT) AS tup_deleted, CAST(0 AS BIGINT) AS conflicts, \
         CAST(0 AS BIGINT) AS temp_files, CAST(0 AS BIGINT) AS temp_bytes, \
         CAST(0 AS BIGINT) AS deadlocks, CAST(NULL AS BIGINT) AS checksum_failures, \
         CAST(NULL AS TIMESTAMP) AS checksum_last_failure, \
         CAST(0 AS DOUBLE) AS blk_read_time, CAST(0 AS DOUBLE) AS blk_write_time, \
         CAST(0 AS DOUBLE) AS session_time, CAST(0 AS DOUBLE) AS active_time, \
         CAST(0 AS DOUBLE) AS idle_in_transaction_time, CAST(0 AS BIGINT) AS sessions, \
         CAST(0 AS BIGINT) AS sessions_abandoned, CAST(0 AS BIGINT) AS sessions_fatal, \
         CAST(0 AS BIGINT) AS sessions_killed, CAST(NULL AS TIMESTAMP) AS stats_reset \
         FROM pg_catalog.pg_database AS d",
    ),
    (
        // tidepool has no foreign servers, so no user mappings.
        "pg_user_mappings",
        "SELECT s.oid AS umid, s.oid AS srvid, s.srvname, CAST(0 AS INT) AS umuser, \
         CAST(NULL AS TEXT) AS usename, CAST(NULL AS TEXT[]) AS umoptions \
         FROM pg_catalog.pg_foreign_server AS s WHERE false",
    ),
    (
        // Privileges granted on configuration parameters (psql's `\dconfig+`): tidepool
        // grants none. A catalog table in PostgreSQL; read-only here like the rest.
        "pg_parameter_acl",
        "SELECT CAST(NULL AS INT) AS oid, CAST(NULL AS TEXT) AS parname, \
         CAST(NULL AS TEXT[]) AS paracl WHERE false",
    ),
    (
        "pg_stat_user_indexes",
        "SELECT x.indrelid AS relid, x.indexrelid AS indexrelid, n.nspname AS schemaname, \
         c.relname AS relname, i.relname AS indexrelname, CAST(0 AS BIGINT) AS idx_scan, \
         CAST(NULL AS TIMESTAMP) AS last_idx_scan, CAST(0 AS BIGINT) AS idx_tup_read, \
         CAST(0 AS BIGINT) AS idx_tup_fetch \
         FROM pg_catalog.pg_index AS x \
         JOIN pg_catalog.pg_class AS c ON c.oid = x.indrelid \
         JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid \
         LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace",
    ),
];

/// Each view's name and parsed query (`None` if it does not parse: a unit test parses each).
type Parsed = Vec<(&'static str, Option<Box<Query>>)>;

/// The query of the system view `name` (lowercase), if it is one of these.
pub(crate) fn query(name: &str) -> Option<(Box<Query>, &'static str)> {
    static PARSED: std::sync::LazyLock<Parsed> = std::sync::LazyLock::new(|| {
        VIEWS
            .iter()
            .map(|(name, sql)| (*name, crate::info_schema::view_query(sql)))
            .collect()
    });
    PARSED
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(n, q)| q.clone().map(|q| (q, *n)))
}

/// Whether `name` is one of these views.
pub(crate) fn is_view(name: &str) -> bool {
    VIEWS.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_view_parses() {
        for (name, _) in super::VIEWS {
            assert!(super::query(name).is_some(), "{name}");
        }
    }
}
