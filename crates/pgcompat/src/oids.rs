//! Stable oids for lake objects the bundled catalogs do not number (procedures, column
//! defaults), shared by the catalog tables that name them (`pg_proc`, `pg_description`,
//! `pg_attrdef`).

/// A stable oid for `schema.name`, above the built-in ones.
pub(crate) fn procedure(schema: &str, name: &str) -> i64 {
    let mut h: u32 = 2_166_136_261;
    for b in schema.bytes().chain([b'.']).chain(name.bytes()) {
        h = (h ^ b as u32).wrapping_mul(16_777_619);
    }
    1_000_000 + (h % 1_000_000_000) as i64
}
