//! What Grafana's PostgreSQL data source sends, verbatim from its `postgresMetaQuery.ts`
//! (query editor: version, schemas, tables, columns) and pgx's health check (`-- ping`).

/// pgx `Ping`: a comment-only simple query.
pub const PING: &str = "-- ping";

pub const VERSION: &str = "SELECT current_setting('server_version_num')::int/100 as version";

pub const TIMESCALEDB: &str = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'";

pub const SCHEMAS: &str = r#"SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"#;

/// `showTables(schema)`.
pub fn tables_in(schema: &str) -> String {
    format!(
        r#"SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = '{}'
      ORDER BY 1"#,
        schema.replace('\'', "''")
    )
}

const SCHEMA_CONSTRAINT: &str = r#"
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"#;

/// `showTables()`: every table, unqualified when its schema is on the search path.
pub fn tables() -> String {
    format!(
        r#"SELECT
    CASE WHEN {c}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {c} THEN 0 ELSE 1 END, 1"#,
        c = SCHEMA_CONSTRAINT
    )
}

/// `getSchema(table)`: columns of `table` (`schema.table` or a table on the search path).
pub fn columns(table: &str) -> String {
    let t = format!("'{}'", table.replace('\'', "''"));
    format!(
        r#"SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({t}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({t}))[1]
          AND quote_ident(table_name) = (parse_ident({t}))[2]
        ELSE quote_ident(table_name) = {t}
          AND {c}
      END"#,
        c = SCHEMA_CONSTRAINT
    )
}
