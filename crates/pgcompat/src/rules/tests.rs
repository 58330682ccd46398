//! The rules on the statements they were written for.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::like_escape::translate_like;
use super::rewrite;

fn rewritten(sql: &str) -> String {
    let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0);
    rewrite(&mut s).unwrap();
    s.to_string()
}

#[test]
fn every_skeleton_parses_and_fills() {
    use datafusion::sql::sqlparser::ast::Expr;
    let e = Expr::value(datafusion::sql::sqlparser::ast::Value::Number(
        "7".into(),
        false,
    ));
    let q = match Parser::new(&PostgreSqlDialect {})
        .try_with_sql("(SELECT 8)")
        .unwrap()
        .parse_expr()
        .unwrap()
    {
        Expr::Subquery(q) => q,
        other => panic!("{other}"),
    };
    for t in [
        &super::expand_array::POSITIONS,
        &super::expand_array::ELEMENTS,
        &super::functions_in_from::ONE_ROW,
        &super::functions_in_from::WITH_UNNEST,
        &super::in_subqueries::ARRAY_HAS,
        &super::catalog_functions::VIEWDEF,
        &super::catalog_functions::NO_COMMENT,
        &super::catalog_functions::SUBSCRIPTS,
        &super::catalog_functions::SERIES_ROWS,
        &super::catalog_functions::NEXT,
        &super::catalog_functions::TYPE_NAME,
        &super::catalog_functions::CLASS_NAME,
        &super::catalog_functions::REGCLASS,
        &super::catalog_functions::REGNAMESPACE,
        &super::catalog_functions::REGTYPE,
        &super::catalog_functions::REGPROC,
        &super::like_escape::LIKE_ESCAPE,
        &super::subqueries::FIRST_VALUE,
        &super::subqueries::ARRAY_AGG,
        &super::subqueries::NULL_ARRAY,
        &super::subqueries::ARRAY_OF,
        &super::subqueries::HOISTED,
        &super::types::CUT,
        &super::types::CUT_PADDED,
    ] {
        let filled = t.fill(&[&e, &e], &[&q]).unwrap().to_string();
        assert!(
            !filled.contains("__e1") && !filled.contains("__q1"),
            "{}: {filled}",
            t.sql()
        );
    }
    let filled = super::subqueries::HOISTED_AGGREGATE
        .fill(&[&e], &[&q, &q])
        .unwrap()
        .to_string();
    assert!(!filled.contains("__q"), "{filled}");
    // A placeholder without a value is an error, not a silent skip.
    assert!(super::in_subqueries::ARRAY_HAS.fill(&[&e], &[]).is_err());
}

#[test]
fn placeholders_are_never_taken_from_the_statement() {
    // A client column named like a placeholder stays what it is.
    assert_eq!(
        rewritten("SELECT generate_subscripts(__e1, 1) FROM t"),
        "SELECT unnest(range(1, CAST(array_length(__e1, 1) AS BIGINT) + 1)) FROM t"
    );
}

#[test]
fn correlated_subqueries_are_aggregated() {
    assert_eq!(
        rewritten(
            "SELECT CASE WHEN t.typtype = 'm' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = t.oid) END FROM pg_type AS t"
        ),
        "SELECT CASE WHEN t.typtype = 'm' THEN (SELECT first_value(rngtypid) FROM pg_range WHERE rngmultitypid = t.oid) END FROM pg_type AS t"
    );
    assert_eq!(
        rewritten(
            "SELECT (SELECT d.description FROM pg_description d WHERE d.objoid = c.oid ORDER BY d.objsubid LIMIT 1) AS x FROM pg_class c"
        ),
        "SELECT (SELECT first_value(d.description ORDER BY d.objsubid) FROM pg_description d WHERE d.objoid = c.oid) AS x FROM pg_class c"
    );
}

#[test]
fn conditions_on_outer_columns_are_hoisted() {
    assert_eq!(
        rewritten(
            "SELECT CASE WHEN a.atthasdef THEN (SELECT d.description FROM pg_description d WHERE a.atthasdef AND d.objoid = a.attrelid) END FROM pg_attribute a"
        ),
        "SELECT CASE WHEN a.atthasdef THEN CASE WHEN (a.atthasdef) THEN (SELECT first_value(d.description) FROM pg_description d WHERE d.objoid = a.attrelid) END END FROM pg_attribute a"
    );
}

#[test]
fn subqueries_over_empty_catalogs_are_null() {
    assert_eq!(
        rewritten(
            "SELECT (SELECT json_build_object('a', a.x) FROM pg_catalog.pg_sequence WHERE seqrelid = a.y) FROM pg_attribute a"
        ),
        "SELECT NULL FROM pg_attribute a"
    );
    let counted = "SELECT (SELECT count(*) FROM pg_sequence) FROM pg_attribute AS a";
    assert_eq!(rewritten(counted), counted);
}

#[test]
fn generate_subscripts_becomes_unnest_of_a_range() {
    assert_eq!(
        rewritten(
            "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord FROM pg_index i"
        ),
        "SELECT unnest(i.indkey) AS attnum, unnest(range(1, CAST(array_length(i.indkey, 1) AS BIGINT) + 1)) AS ord FROM pg_index i"
    );
}

#[test]
fn qualified_function_names_match_proname() {
    assert_eq!(
        rewritten("SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'pg_catalog.array_in'"),
        "SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'array_in'"
    );
}

#[test]
fn functions_in_from_become_tables() {
    assert_eq!(
        rewritten("SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s"),
        "SELECT s[i] FROM generate_series(1, 2) AS i (i), (SELECT string_to_array('a,b', ',') AS s) AS s"
    );
}

#[test]
fn in_subqueries_outside_filters_become_array_has() {
    assert_eq!(
        rewritten(
            "SELECT CASE WHEN a IN (SELECT b FROM t) THEN 1 END, a IN (SELECT b FROM t) FROM u WHERE a IN (SELECT b FROM t)"
        ),
        "SELECT CASE WHEN array_has((SELECT array_agg(__in.__v) FROM (SELECT b FROM t) AS __in (__v)), a) THEN 1 END, array_has((SELECT array_agg(__in.__v) FROM (SELECT b FROM t) AS __in (__v)), a) FROM u WHERE a IN (SELECT b FROM t)"
    );
}

#[test]
fn series_aliases_used_as_values_keep_datafusion_names() {
    let same = "SELECT count(*) FROM generate_series(1, 20) a WHERE a.value % 7 = 0";
    assert_eq!(rewritten(same), same);
}

#[test]
fn expandarray_becomes_unnests() {
    assert_eq!(
        rewritten(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n AS k, information_schema._pg_expandarray(i.indkey) AS keys FROM t WHERE r.a = (r.keys).x"
        ),
        "SELECT unnest(range(1, CAST(cardinality(i.indkey) AS BIGINT) + 1)) AS k, unnest(i.indkey) AS keys FROM t WHERE r.a = r.keys"
    );
}

#[test]
fn array_subqueries_become_array_agg() {
    assert_eq!(
        rewritten("SELECT ARRAY(SELECT a FROM t ORDER BY a) AS x"),
        "SELECT (SELECT array_agg(__a.__v) FROM (SELECT a FROM t ORDER BY a) AS __a (__v)) AS x"
    );
}

#[test]
fn correlated_array_subqueries_aggregate_in_place() {
    assert_eq!(
        rewritten(
            "SELECT ARRAY(SELECT attname FROM pg_attribute a WHERE a.attrelid = c.oid ORDER BY attnum) FROM pg_class c"
        ),
        "SELECT (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute a WHERE a.attrelid = c.oid) FROM pg_class c"
    );
}

#[test]
fn unnest_of_always_null_catalog_arrays_is_null() {
    assert_eq!(
        rewritten(
            "SELECT array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_class c"
        ),
        "SELECT array_to_string(c.reloptions || CAST(NULL AS TEXT[]), ', ') FROM pg_class c"
    );
    assert_eq!(
        rewritten("SELECT pg_catalog.array_to_string(n.nspacl, E'\\n') FROM pg_namespace n"),
        "SELECT pg_acl_to_string(n.nspacl, E'\\n') FROM pg_namespace n"
    );
}

#[test]
fn like_patterns_translate() {
    assert_eq!(translate_like("pg/_%", Some('/')), "pg\\_%");
    assert_eq!(translate_like("a//b\\c", Some('/')), "a/b\\\\c");
    // An empty ESCAPE turns escaping off.
    assert_eq!(translate_like("a_b", None), "a_b");
}

#[test]
fn like_escape_characters_become_backslashes() {
    assert_eq!(
        rewritten("SELECT 1 FROM n WHERE n.nspname NOT LIKE 'pg/_' || '%' ESCAPE '/'"),
        "SELECT 1 FROM n WHERE n.nspname NOT LIKE pg_like_escape('pg/_' || '%', '/')"
    );
    let same = "SELECT 1 FROM n WHERE a LIKE 'x\\_%' ESCAPE '\\'";
    assert_eq!(rewritten(same), same);
}

#[test]
fn other_subqueries_are_left_alone() {
    for sql in [
        "SELECT (SELECT max(a) FROM t WHERE t.b = u.b) FROM u",
        "SELECT (SELECT a FROM t WHERE t.b = 1) FROM u",
        "SELECT (SELECT a FROM t WHERE t.b = u.b LIMIT 2) FROM u",
        "SELECT (SELECT count(*) + 1 FROM t WHERE t.b = u.b) FROM u",
    ] {
        let mut expected = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
            .to_string();
        expected = expected.replace("  ", " ");
        assert_eq!(rewritten(sql), expected, "{sql}");
    }
}

#[test]
fn float_precision_follows_postgres() {
    assert_eq!(
        rewritten("CREATE TABLE t (a FLOAT(53), b FLOAT, c FLOAT(24), d FLOAT(1), e FLOAT(53)[])"),
        "CREATE TABLE t (a DOUBLE PRECISION, b DOUBLE PRECISION, c REAL, d REAL, e DOUBLE PRECISION[])"
    );
    assert_eq!(
        rewritten("SELECT CAST(x AS FLOAT(30)), y::float FROM t"),
        "SELECT CAST(x AS DOUBLE PRECISION), y::DOUBLE PRECISION FROM t"
    );
}

#[test]
fn char_without_a_length_is_one_character() {
    assert_eq!(
        rewritten("CREATE TABLE t (a CHARACTER, b CHAR, c CHARACTER(4), d VARCHAR(2))"),
        "CREATE TABLE t (a CHAR(1), b CHAR(1), c CHAR(4), d VARCHAR(2))"
    );
    assert_eq!(
        rewritten("ALTER TABLE t ADD COLUMN a CHARACTER"),
        "ALTER TABLE t ADD COLUMN a CHAR(1)"
    );
}

#[test]
fn catalog_table_functions_lose_their_qualifier() {
    assert_eq!(
        rewritten("SELECT x FROM pg_catalog.unnest(ARRAY['a']) AS t(x)"),
        "SELECT x FROM UNNEST(ARRAY['a']) AS t (x)"
    );
}

#[test]
fn tableoid_is_the_relations_oid() {
    assert_eq!(
        rewritten("SELECT l.tableoid FROM pg_catalog.pg_language AS l"),
        "SELECT 2612 FROM pg_catalog.pg_language AS l"
    );
    assert!(rewritten("SELECT tableoid FROM gold.t").contains("'gold.t'"));
    assert_eq!(
        rewritten("SELECT x.tableoid FROM gold.t"),
        "SELECT x.tableoid FROM gold.t"
    );
}

#[test]
fn unnest_unqualified_by_the_compat_rules_is_unnest() {
    let mut s = crate::parser::Compat::new()
        .parse("SELECT x FROM pg_catalog.unnest(ARRAY['a', 'b']) AS t(x)")
        .unwrap()
        .remove(0);
    rewrite(&mut s).unwrap();
    assert_eq!(
        s.to_string(),
        "SELECT x FROM UNNEST(ARRAY['a', 'b']) AS t (x)"
    );
}

#[test]
fn tableoid_in_each_arm_of_a_union_is_that_arms_relation() {
    let out = rewritten(
        "SELECT * FROM (SELECT t.oid, t.tableoid FROM pg_catalog.pg_type t \
         UNION ALL SELECT t.oid, t.tableoid FROM pg_catalog.pg_trigger t \
         UNION ALL SELECT c.oid, (SELECT c.tableoid) FROM pg_catalog.pg_class c \
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc c WHERE c.tableoid = 1)) AS tt",
    );
    assert_eq!(
        out,
        "SELECT * FROM (SELECT t.oid, 1247 FROM pg_catalog.pg_type t \
         UNION ALL SELECT t.oid, 2620 FROM pg_catalog.pg_trigger t \
         UNION ALL SELECT c.oid, (SELECT 1259) FROM pg_catalog.pg_class c \
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc c WHERE 1255 = 1)) AS tt"
    );
}

#[test]
fn result_columns_of_regclass_show_names() {
    let out = rewritten("SELECT c.oid::regclass, c.oid FROM pg_class c WHERE c.oid::regclass = 1");
    assert!(out.starts_with("SELECT CASE WHEN c.oid IS NULL"), "{out}");
    assert!(out.contains(" AS oid, c.oid FROM pg_class"), "{out}");
    assert!(out.ends_with("WHERE c.oid::REGCLASS = 1"), "{out}");
}

#[test]
fn regclass_of_a_name_is_not_shown_as_a_name_lookup() {
    let sql = "SELECT format('%I.%I', n.nspname, c.relname)::regclass FROM pg_class c";
    assert_eq!(
        rewritten(sql),
        "SELECT format('%I.%I', n.nspname, c.relname)::REGCLASS FROM pg_class c"
    );
}
