//! What a table keeps about its columns in the Delta schema's field metadata, under the
//! keys Spark uses, so Spark and Databricks read the same thing:
//!
//! - a declared `varchar(n)` or `char(n)` as `__CHAR_VARCHAR_TYPE_STRING` = `varchar(5)`
//!   (the column is a Delta `string`; tidepool checks the length on every write, 22001);
//! - a column's comment as `comment`.
//!
//! Both change with one metadata commit; no data file is touched. A table's own comment is
//! the Delta table's description; that of a view, external table or procedure is kept
//! next to its definition (`<name>.comment`), moved and dropped with it.

use std::collections::HashMap;

use deltalake::kernel::{MetadataExt, MetadataValue, StructField, StructType};
use object_store::ObjectStoreExt;

use crate::metadata::commit_metadata;
use crate::{DefinitionKind, Lake, LakeError, META_DIR, check_name};

/// Spark's field metadata key for a `char(n)` / `varchar(n)` column.
pub const CHAR_TYPE_KEY: &str = "__CHAR_VARCHAR_TYPE_STRING";
/// Spark's field metadata key for a column's comment.
pub const COMMENT_KEY: &str = "comment";

/// A declared length of a character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub struct CharLength {
    /// At most this many characters.
    pub length: u32,
    /// `char(n)`: blank-padded to `length`.
    pub fixed: bool,
}

impl CharLength {
    /// Spark's spelling, kept in the field metadata: `varchar(5)`, `char(3)`.
    pub fn type_string(&self) -> String {
        let name = if self.fixed { "char" } else { "varchar" };
        format!("{name}({})", self.length)
    }

    /// Reads [`CharLength::type_string`]'s form back (any case).
    pub fn parse(s: &str) -> Option<CharLength> {
        let s = s.trim().to_ascii_lowercase();
        let (fixed, rest) = if let Some(r) = s.strip_prefix("varchar(") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("char(") {
            (true, r)
        } else {
            return None;
        };
        let length = rest.strip_suffix(')')?.trim().parse().ok()?;
        Some(CharLength { length, fixed })
    }

    /// PostgreSQL's name of the type: `character varying(5)`, `character(3)`.
    pub fn pg_name(&self) -> String {
        let name = if self.fixed {
            "character"
        } else {
            "character varying"
        };
        format!("{name}({})", self.length)
    }

    /// The declared length of a field from its Arrow metadata, if any.
    pub fn of_arrow(field: &datafusion::arrow::datatypes::Field) -> Option<CharLength> {
        field
            .metadata()
            .get(CHAR_TYPE_KEY)
            .and_then(|s| CharLength::parse(s))
    }
}

/// The declared lengths of `schema`'s columns, in column order.
pub(crate) fn lengths_of(schema: &StructType) -> Vec<(String, CharLength)> {
    schema
        .fields()
        .filter_map(|f| match f.metadata().get(CHAR_TYPE_KEY) {
            Some(MetadataValue::String(s)) => Some((f.name().clone(), CharLength::parse(s)?)),
            _ => None,
        })
        .collect()
}

/// `schema` with the metadata `key` of each named column set (`Some`) or removed.
pub(crate) fn with_field_metadata(
    schema: &StructType,
    changes: &HashMap<String, (String, Option<String>)>,
) -> Result<StructType, LakeError> {
    let fields: Vec<StructField> = schema
        .fields()
        .map(|f| {
            let Some((key, value)) = changes.get(f.name()) else {
                return f.clone();
            };
            let mut metadata = f.metadata().clone();
            match value {
                Some(v) => {
                    metadata.insert(key.clone(), MetadataValue::String(v.clone()));
                }
                None => {
                    metadata.remove(key);
                }
            }
            f.clone().with_metadata(metadata)
        })
        .collect();
    StructType::try_new(fields).map_err(|e| LakeError::Delta(e.into()))
}

impl Lake {
    /// Sets (`Some`) or removes the comment of `schema.table`'s `column`. 42703 when the
    /// table has no such column.
    pub async fn comment_column(
        &self,
        schema: &str,
        table: &str,
        column: &str,
        comment: Option<&str>,
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        let snapshot = target.snapshot()?;
        if snapshot.schema().field(column).is_none() {
            return Err(LakeError::UndefinedColumn(format!(
                "column \"{column}\" of relation \"{table}\" does not exist"
            )));
        }
        let changes = HashMap::from([(
            column.to_string(),
            (COMMENT_KEY.to_string(), comment.map(str::to_string)),
        )]);
        let new_schema = with_field_metadata(snapshot.schema().as_ref(), &changes)?;
        commit_metadata(&target, |m| Ok(m.with_schema(&new_schema)?)).await
    }

    /// Gives the named columns of `schema.table` exactly `metadata` (their comments and
    /// declared lengths after a rewrite), and makes the columns in `not_null` NOT NULL: one
    /// metadata commit.
    pub async fn restyle_columns(
        &self,
        schema: &str,
        table: &str,
        metadata: &HashMap<String, HashMap<String, String>>,
        not_null: &[String],
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        let current = target.snapshot()?.schema();
        let fields: Vec<StructField> = current
            .fields()
            .map(|f| {
                let mut f = f.clone();
                if let Some(m) = metadata.get(f.name()) {
                    f = f.with_metadata(
                        m.iter()
                            .map(|(k, v)| (k.clone(), MetadataValue::String(v.clone()))),
                    );
                }
                if not_null.contains(f.name()) {
                    f.nullable = false;
                }
                f
            })
            .collect();
        let schema = StructType::try_new(fields).map_err(|e| LakeError::Delta(e.into()))?;
        commit_metadata(&target, |m| Ok(m.with_schema(&schema)?)).await
    }

    /// The partition columns of `schema.table`.
    pub async fn partition_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<String>, LakeError> {
        let target = self.existing(schema, table).await?;
        Ok(target.snapshot()?.metadata().partition_columns().to_vec())
    }

    /// Sets (`Some`) or removes (`None`: an empty description) the comment of
    /// `schema.table`, kept as the Delta table's description.
    pub async fn comment_table(
        &self,
        schema: &str,
        table: &str,
        comment: Option<&str>,
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        let text = comment.unwrap_or_default().to_string();
        commit_metadata(&target, |m| Ok(m.with_description(text)?)).await
    }

    /// The comments of `schema.table`: the table's, then each commented column's.
    pub async fn comments(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<(Option<String>, Vec<(String, String)>), LakeError> {
        let Some(t) = self.table(schema, table).await? else {
            return Ok((None, Vec::new()));
        };
        let snapshot = t.snapshot()?;
        let description = snapshot
            .metadata()
            .description()
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        let columns = snapshot
            .schema()
            .fields()
            .filter_map(|f| match f.metadata().get(COMMENT_KEY) {
                Some(MetadataValue::String(c)) => Some((f.name().clone(), c.clone())),
                _ => None,
            })
            .collect();
        Ok((description, columns))
    }
}

impl Lake {
    fn comment_path(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
    ) -> object_store::path::Path {
        self.object_path(&format!(
            "{META_DIR}/{}/{schema}/{name}.comment",
            kind.dir()
        ))
    }

    /// Sets (`Some`) or removes the comment of a stored definition (view, external
    /// table, procedure); 42P01 when there is no such definition.
    pub async fn comment_definition(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
        comment: Option<&str>,
    ) -> Result<(), LakeError> {
        check_name(schema)?;
        check_name(name)?;
        if self.definition(kind, schema, name).await?.is_none() {
            return Err(LakeError::TableNotFound(format!("{schema}.{name}")));
        }
        let path = self.comment_path(kind, schema, name);
        match comment {
            Some(c) => {
                self.store.put(&path, c.as_bytes().to_vec().into()).await?;
            }
            None => self.delete_if_there(&path).await?,
        }
        Ok(())
    }

    /// The comment of a stored definition, if it has one.
    pub async fn definition_comment(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
    ) -> Result<Option<String>, LakeError> {
        if check_name(schema).is_err() || check_name(name).is_err() {
            return Ok(None);
        }
        match self.store.get(&self.comment_path(kind, schema, name)).await {
            Ok(r) => Ok(Some(
                String::from_utf8_lossy(&r.bytes().await?).into_owned(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves (`to: Some`) or drops the comment of a definition renamed or dropped.
    pub(crate) async fn carry_comment(
        &self,
        kind: DefinitionKind,
        schema: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<(), LakeError> {
        let old = self.comment_path(kind, schema, from);
        if let Some(to) = to
            && let Some(c) = self.definition_comment(kind, schema, from).await?
        {
            self.comment_definition(kind, schema, to, Some(&c)).await?;
        }
        self.delete_if_there(&old).await
    }

    async fn delete_if_there(&self, path: &object_store::path::Path) -> Result<(), LakeError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_back_in_sparks_spelling() {
        let v = CharLength {
            length: 5,
            fixed: false,
        };
        assert_eq!(v.type_string(), "varchar(5)");
        assert_eq!(CharLength::parse("VARCHAR(5)"), Some(v));
        assert_eq!(
            CharLength::parse("char(3)").map(|c| c.pg_name()),
            Some("character(3)".to_string())
        );
        assert_eq!(CharLength::parse("string"), None);
    }
}
