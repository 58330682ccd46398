//! Stable oids for lake objects the bundled catalogs do not number (procedures, column
//! defaults), shared by the catalog tables that name them (`pg_proc`, `pg_description`,
//! `pg_attrdef`); and PostgreSQL's own oids for its catalog tables, which the bundled
//! rows name (`pg_description.classoid`, `pg_depend.classid`) and clients compare with
//! `tableoid` and `'pg_class'::regclass`, where datafusion-pg-catalog numbers each
//! table it lists from 16384 up.

/// A stable oid for `schema.name`, above the built-in ones.
pub(crate) fn procedure(schema: &str, name: &str) -> i64 {
    let mut h: u32 = 2_166_136_261;
    for b in schema.bytes().chain([b'.']).chain(name.bytes()) {
        h = (h ^ b as u32).wrapping_mul(16_777_619);
    }
    1_000_000 + (h % 1_000_000_000) as i64
}

/// PostgreSQL's oids of the `pg_catalog` tables (`pg_class.oid`, the same in every
/// cluster since they are fixed in its headers).
const CATALOG_TABLES: &[(&str, i64)] = &[
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_amop", 2602),
    ("pg_amproc", 2603),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_auth_members", 1261),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_db_role_setting", 2964),
    ("pg_default_acl", 826),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_event_trigger", 3466),
    ("pg_extension", 3079),
    ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417),
    ("pg_foreign_table", 3118),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_init_privs", 3394),
    ("pg_language", 2612),
    ("pg_largeobject", 2613),
    ("pg_largeobject_metadata", 2995),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_partitioned_table", 3350),
    ("pg_policy", 3256),
    ("pg_proc", 1255),
    ("pg_publication", 6104),
    ("pg_publication_namespace", 6237),
    ("pg_publication_rel", 6106),
    ("pg_range", 3541),
    ("pg_replication_origin", 6000),
    ("pg_rewrite", 2618),
    ("pg_seclabel", 3596),
    ("pg_sequence", 2224),
    ("pg_shdepend", 1214),
    ("pg_shdescription", 2396),
    ("pg_shseclabel", 3592),
    ("pg_statistic", 2619),
    ("pg_statistic_ext", 3381),
    ("pg_statistic_ext_data", 3429),
    ("pg_subscription", 6100),
    ("pg_subscription_rel", 6102),
    ("pg_tablespace", 1213),
    ("pg_transform", 3576),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_ts_config_map", 3603),
    ("pg_ts_dict", 3600),
    ("pg_ts_parser", 3601),
    ("pg_ts_template", 3764),
    ("pg_type", 1247),
    ("pg_user_mapping", 1418),
];

/// PostgreSQL's oid of the catalog table `name` (in `pg_catalog`).
pub(crate) fn catalog_table(name: &str) -> Option<i64> {
    CATALOG_TABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, oid)| *oid)
}

/// The `pg_catalog` namespace's oid.
pub(crate) const PG_CATALOG: i64 = 11;

/// Bundled `pg_class` oids of catalog tables -> PostgreSQL's, from `classes` (oid ->
/// (relname, relnamespace), as [`crate::gathered::names`] reads `pg_class`).
pub(crate) fn catalog_renumbering(
    classes: &std::collections::HashMap<i64, (String, i64)>,
) -> std::collections::HashMap<i64, i64> {
    classes
        .iter()
        .filter(|(_, (_, ns))| *ns == PG_CATALOG)
        .filter_map(|(oid, (name, _))| catalog_table(name).map(|c| (*oid, c)))
        .collect()
}

/// `column` (an oid column) with the oids in `renumbering` replaced.
pub(crate) fn renumber(
    column: &datafusion::arrow::array::ArrayRef,
    renumbering: &std::collections::HashMap<i64, i64>,
) -> datafusion::error::Result<datafusion::arrow::array::ArrayRef> {
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    if renumbering.is_empty() {
        return Ok(column.clone());
    }
    let wide = cast(column, &DataType::Int64)?;
    let wide = wide.as_primitive::<Int64Type>();
    let out: Int64Array = wide
        .iter()
        .map(|v| v.map(|o| renumbering.get(&o).copied().unwrap_or(o)))
        .collect();
    let out: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(out);
    Ok(cast(&out, column.data_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_tables_are_renumbered_only_in_pg_catalog() {
        let classes = std::collections::HashMap::from([
            (16_400, ("pg_class".to_string(), PG_CATALOG)),
            (16_401, ("pg_language".to_string(), PG_CATALOG)),
            (16_500, ("pg_class".to_string(), 2200)),
            (16_402, ("pg_settings".to_string(), PG_CATALOG)),
        ]);
        let r = catalog_renumbering(&classes);
        assert_eq!(r.get(&16_400), Some(&1259));
        assert_eq!(r.get(&16_401), Some(&2612));
        assert_eq!(r.get(&16_500), None);
        assert_eq!(r.get(&16_402), None);
        let column: datafusion::arrow::array::ArrayRef =
            std::sync::Arc::new(datafusion::arrow::array::Int32Array::from(vec![
                Some(16_400),
                None,
                Some(16_500),
            ]));
        let out = renumber(&column, &r).unwrap();
        let out = datafusion::arrow::array::AsArray::as_primitive::<
            datafusion::arrow::datatypes::Int32Type,
        >(&out);
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(1259), None, Some(16_500)]
        );
    }
}
