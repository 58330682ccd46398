//! `ALTER TABLE` in the lake: `ADD COLUMN` and `DROP NOT NULL` are one Delta metadata
//! commit each (no data file is touched; rows written before read NULL in a new column).
//! `RENAME TO` renames a table or a stored definition (views, external tables). A table is its folder `<schema>/<table>/`, so renaming it moves the folder:
//! on a local lake one `rename(2)` of the directory (atomic, no file copied); on an object
//! store every object is copied server side (no bytes pass through tidepool) and the Delta
//! log comes last, so the new name is a table only once all its files are there, then the
//! old log goes first, so the old name stops being a table before its files go.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use datafusion::arrow::datatypes::Field;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;

use crate::{DefinitionKind, Lake, LakeError, META_DIR, check_name};

impl Lake {
    /// Renames the Delta table `schema.from` to `schema.to`. 42P01 if there is no such
    /// table, 42P07 if `to` is taken by a table, view or external table.
    pub async fn rename_table(&self, schema: &str, from: &str, to: &str) -> Result<(), LakeError> {
        check_name(schema)?;
        check_name(to)?;
        if !self.is_delta_table(schema, from).await? {
            return Err(LakeError::TableNotFound(format!("{schema}.{from}")));
        }
        self.ensure_free(schema, to).await?;
        let old = self.table_url(schema, from)?;
        let new = self.table_url(schema, to)?;
        match (old.to_file_path(), new.to_file_path()) {
            (Ok(old), Ok(new)) if self.root.scheme() == "file" => {
                std::fs::rename(&old, &new).map_err(|source| LakeError::Io {
                    path: old.display().to_string(),
                    source,
                })?;
            }
            _ => {
                self.move_objects(&format!("{schema}/{from}"), &format!("{schema}/{to}"))
                    .await?
            }
        }
        self.tables
            .lock()
            .remove(&(schema.to_string(), from.to_string()));
        self.refresh().await?;
        Ok(())
    }

    /// Adds `field` to `schema.table`; false (nothing written) when a column of that name
    /// exists and `if_not_exists` says to leave it.
    pub async fn add_column(
        &self,
        schema: &str,
        table: &str,
        field: Field,
        if_not_exists: bool,
    ) -> Result<bool, LakeError> {
        let target = self.existing(schema, table).await?;
        let taken = target
            .snapshot()?
            .schema()
            .fields()
            .any(|f| f.name() == field.name());
        if taken {
            if if_not_exists {
                return Ok(false);
            }
            return Err(LakeError::ColumnExists(format!(
                "{} of {schema}.{table}",
                field.name()
            )));
        }
        let field: StructField = (&field).try_into_kernel().map_err(LakeError::Arrow)?;
        target.add_columns().with_fields([field]).await?;
        Ok(true)
    }

    /// Sets Delta table properties (`delta.appendOnly`, `delta.enableDeletionVectors`,
    /// `delta.targetFileSize`...) on `schema.table`: one metadata commit, which also
    /// raises the table's protocol when a property needs a table feature. tidepool's own
    /// `tidepool.*` keys (constraints, defaults) are set through their statements only.
    pub async fn set_properties(
        &self,
        schema: &str,
        table: &str,
        properties: std::collections::HashMap<String, String>,
    ) -> Result<(), LakeError> {
        if let Some(k) = properties.keys().find(|k| k.starts_with("tidepool.")) {
            return Err(LakeError::Unsupported(format!(
                "setting {k}: tidepool keeps it (use ADD CONSTRAINT or SET DEFAULT)"
            )));
        }
        let mut properties = properties;
        // Stored in bytes, the form every Delta reader parses ('64mb' is accepted here).
        if let Some(v) = properties.get_mut("delta.targetFileSize")
            && let Some(n) = crate::parse_size(v)
        {
            *v = n.to_string();
        }
        let target = self.existing(schema, table).await?;
        target
            .set_tbl_properties()
            .with_properties(properties)
            .with_raise_if_not_exists(true)
            .await?;
        Ok(())
    }

    /// Lets `column` of `schema.table` hold NULL.
    pub async fn drop_not_null(
        &self,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Result<(), LakeError> {
        let target = self.existing(schema, table).await?;
        target.drop_column_not_null().with_column(column).await?;
        Ok(())
    }

    /// Renames a stored definition `schema.from` of `kind` to `schema.to`.
    pub async fn rename_definition(
        &self,
        kind: DefinitionKind,
        schema: &str,
        from: &str,
        to: &str,
    ) -> Result<(), LakeError> {
        check_name(to)?;
        let Some(sql) = self.definition(kind, schema, from).await? else {
            return Err(LakeError::TableNotFound(format!("{schema}.{from}")));
        };
        self.ensure_free(schema, to).await?;
        self.put_definition(kind, schema, to, &sql).await?;
        self.carry_comment(kind, schema, from, Some(to)).await?;
        self.drop_definition(kind, schema, from).await?;
        Ok(())
    }

    async fn ensure_free(&self, schema: &str, name: &str) -> Result<(), LakeError> {
        let taken = self.refresh().await?.contains(schema, name)
            || self.is_delta_table(schema, name).await?;
        if taken {
            return Err(LakeError::TableExists(format!("{schema}.{name}")));
        }
        Ok(())
    }

    /// Renames the schema `from` to `to` with everything in it: its tables' folders, the
    /// definitions of its views, external tables and procedures (with their comments) and
    /// its marker. On a local lake each is one `rename(2)`; on an object store every object
    /// is copied server side, Delta logs last. The caller checks that `from` exists and
    /// `to` does not.
    pub async fn rename_schema(&self, from: &str, to: &str) -> Result<(), LakeError> {
        check_name(from)?;
        check_name(to)?;
        let mut moves = vec![(from.to_string(), to.to_string())];
        for kind in [
            DefinitionKind::View,
            DefinitionKind::External,
            DefinitionKind::Procedure,
        ] {
            let dir = kind.dir();
            moves.push((
                format!("{META_DIR}/{dir}/{from}"),
                format!("{META_DIR}/{dir}/{to}"),
            ));
        }
        moves.push((
            format!("{META_DIR}/schemas/{from}"),
            format!("{META_DIR}/schemas/{to}"),
        ));
        let local = self.root.scheme() == "file";
        let file = |rel: &str| self.root.join(rel).ok()?.to_file_path().ok();
        for (old, new) in &moves {
            match (local, file(old), file(new)) {
                (true, Some(o), Some(n)) => {
                    if !o.exists() {
                        continue;
                    }
                    if let Some(parent) = n.parent() {
                        std::fs::create_dir_all(parent).map_err(|source| LakeError::Io {
                            path: parent.display().to_string(),
                            source,
                        })?;
                    }
                    std::fs::rename(&o, &n).map_err(|source| LakeError::Io {
                        path: o.display().to_string(),
                        source,
                    })?;
                }
                _ => self.move_objects(old, new).await?,
            }
        }
        self.tables.lock().retain(|(s, _), _| s != from);
        self.refresh().await?;
        Ok(())
    }

    /// Moves every object under `old` (a path under the root) to the same place under
    /// `new`: data first, Delta logs last; then deletes logs first.
    async fn move_objects(&self, old: &str, new: &str) -> Result<(), LakeError> {
        let old_prefix = self.object_path(old);
        let new_prefix = self.object_path(new);
        let objects: Vec<ObjectPath> = self
            .store
            .list(Some(&old_prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let in_log = |p: &ObjectPath| p.parts().any(|part| part.as_ref() == "_delta_log");
        let (log, data): (Vec<_>, Vec<_>) = objects.into_iter().partition(|p| in_log(p));
        let moved = |p: &ObjectPath| -> ObjectPath {
            let mut out = new_prefix.clone();
            for part in p.prefix_match(&old_prefix).into_iter().flatten() {
                out = out.join(part);
            }
            out
        };
        for p in data.iter().chain(log.iter()) {
            self.store.copy(p, &moved(p)).await?;
        }
        for p in log.iter().chain(data.iter()) {
            match self.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use crate::Lake;

    async fn lake_with_table(dir: &std::path::Path) -> Arc<Lake> {
        let lake = crate::test_lake(dir);
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let url = lake.table_url("gold", "t").unwrap();
        std::fs::create_dir_all(dir.join("gold/t")).unwrap();
        let t = deltalake::DeltaTable::try_from_url(url).await.unwrap();
        let t = t.write(vec![batch.clone()]).await.unwrap();
        t.write(vec![batch]).await.unwrap();
        lake
    }

    async fn rows(lake: &Lake, table: &str) -> i64 {
        crate::file_rows(&lake.table("gold", table).await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn a_local_rename_moves_the_folder_with_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with_table(dir.path()).await;
        lake.rename_table("gold", "t", "u").await.unwrap();
        assert!(lake.table("gold", "t").await.unwrap().is_none());
        assert_eq!(rows(&lake, "u").await, 6);
        let (version, _) = lake.history("gold", "u").await.unwrap();
        assert_eq!(version, 1, "both commits came along");
        assert!(!dir.path().join("gold/t").exists());
    }

    #[tokio::test]
    async fn the_object_store_path_copies_every_file_and_the_log_last() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with_table(dir.path()).await;
        lake.move_objects("gold/t", "gold/u").await.unwrap();
        lake.refresh().await.unwrap();
        assert!(lake.table("gold", "t").await.unwrap().is_none());
        assert_eq!(rows(&lake, "u").await, 6);
    }

    #[tokio::test]
    async fn a_taken_name_is_refused_and_nothing_moves() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with_table(dir.path()).await;
        lake.put_definition(crate::DefinitionKind::View, "gold", "v", "SELECT 1")
            .await
            .unwrap();
        let err = lake.rename_table("gold", "t", "v").await.unwrap_err();
        assert!(matches!(err, crate::LakeError::TableExists(_)), "{err}");
        assert_eq!(rows(&lake, "t").await, 6);
    }
}
