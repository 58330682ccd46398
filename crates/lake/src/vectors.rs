//! Deletion vectors: rows of a Delta table's file marked deleted without rewriting the
//! file. Reading the vector a file already has, and turning a set of marked rows per file
//! into the actions of one commit (one `deletion_vector_<uuid>.bin` holding a vector per
//! file; each file removed and added again with its vector and loose statistics). Used by
//! keyed upserts ([`crate::upsert`]) and DELETE ([`crate::dv_delete`]).

use buoyant_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use deltalake::DeltaTable;
use deltalake::kernel::{Action, DeletionVectorDescriptor, LogicalFileView, StorageType};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use roaring::RoaringTreemap;

use crate::LakeError;

/// Whether `table` may carry deletion vectors (its protocol has the feature).
pub(crate) fn enabled(table: &DeltaTable) -> Result<bool, LakeError> {
    Ok(table
        .snapshot()?
        .protocol()
        .reader_features()
        .is_some_and(|f| {
            f.contains(&buoyant_kernel::table_features::TableFeature::DeletionVectors)
        }))
}

/// Whether deletes on `table` can go by deletion vector: it has the feature, and no
/// partition columns or column mapping (file positions and names as written).
pub(crate) fn usable(table: &DeltaTable) -> Result<bool, LakeError> {
    Ok(enabled(table)? && as_written(table)?)
}

/// Whether `table`'s data files hold its columns as they are named, whole: no partition
/// columns, no column mapping. Rows can then be found and copied by their position.
pub(crate) fn as_written(table: &DeltaTable) -> Result<bool, LakeError> {
    let snapshot = table.snapshot()?;
    let metadata = snapshot.metadata();
    Ok(metadata.partition_columns().is_empty()
        && metadata
            .configuration()
            .get("delta.columnMapping.mode")
            .is_none_or(|m| m == "none"))
}

/// The actions that mark, per file, the rows of its whole new vector deleted (the rows
/// its old vector held included). Writes the vectors' file first.
pub(crate) async fn marked_actions(
    table: &DeltaTable,
    marked: &[(&LogicalFileView, RoaringTreemap)],
) -> Result<Vec<Action>, LakeError> {
    let mut actions = Vec::with_capacity(marked.len() * 2);
    if marked.is_empty() {
        return Ok(actions);
    }
    let store = table.object_store();
    // One deletion-vector file for this commit, holding a vector per marked file.
    let uuid = uuid::Uuid::new_v4();
    let mut buf = Vec::new();
    let mut written = Vec::new();
    {
        let mut writer = StreamingDeletionVectorWriter::new(&mut buf);
        for (_, dv) in marked {
            let mut k = KernelDeletionVector::new();
            k.add_deleted_row_indexes(dv.iter());
            written.push(writer.write_deletion_vector(k).map_err(kernel_error)?);
        }
        writer.finalize().map_err(kernel_error)?;
    }
    store
        .put(
            &ObjectPath::from(format!("deletion_vector_{uuid}.bin")),
            buf.into(),
        )
        .await?;
    let encoded = z85::encode(uuid.as_bytes());
    for ((view, _), w) in marked.iter().zip(written) {
        actions.push(Action::Remove(view.remove_action(true)));
        #[allow(deprecated)]
        let mut add = view.add_action();
        add.data_change = true;
        add.deletion_vector = Some(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: encoded.clone(),
            offset: Some(w.offset),
            size_in_bytes: w.size_in_bytes,
            cardinality: w.cardinality,
        });
        add.stats = add.stats.map(loose_bounds);
        actions.push(Action::Add(add));
    }
    Ok(actions)
}

fn kernel_error(e: buoyant_kernel::Error) -> LakeError {
    LakeError::Delta(deltalake::DeltaTableError::Generic(e.to_string()))
}

/// File statistics once some rows are deleted: min/max may be wider than the live rows.
fn loose_bounds(stats: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&stats) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.insert("tightBounds".into(), serde_json::Value::Bool(false));
            serde_json::Value::Object(o).to_string()
        }
        _ => stats,
    }
}

/// The rows a deletion vector marks deleted (stored in a file of the table whose store is
/// `store` and whose root URL is `root`, or inline).
pub(crate) async fn read(
    store: &dyn object_store::ObjectStore,
    root: &str,
    d: &DeletionVectorDescriptor,
) -> Result<RoaringTreemap, LakeError> {
    const MAGIC: u32 = 1681511377;
    let bad = |why: &str| {
        LakeError::Delta(deltalake::DeltaTableError::Generic(format!(
            "deletion vector {}: {why}",
            d.path_or_inline_dv
        )))
    };
    let bitmap = match d.storage_type {
        StorageType::Inline => z85::decode(&d.path_or_inline_dv).map_err(|_| bad("bad z85"))?,
        StorageType::UuidRelativePath | StorageType::AbsolutePath => {
            let path = match d.storage_type {
                StorageType::UuidRelativePath => {
                    let n = d.path_or_inline_dv.len();
                    if n < 20 {
                        return Err(bad("path too short"));
                    }
                    let (prefix, id) = d.path_or_inline_dv.split_at(n - 20);
                    let id = z85::decode(id).map_err(|_| bad("bad z85"))?;
                    let id = uuid::Uuid::from_slice(&id).map_err(|_| bad("bad uuid"))?;
                    let name = format!("deletion_vector_{id}.bin");
                    if prefix.is_empty() {
                        ObjectPath::from(name)
                    } else {
                        ObjectPath::from(format!("{prefix}/{name}"))
                    }
                }
                _ => match d.path_or_inline_dv.strip_prefix(root) {
                    Some(rel) => ObjectPath::from(rel.trim_start_matches('/')),
                    None => return Err(bad("not under the table")),
                },
            };
            let start = d.offset.unwrap_or(1).max(0) as u64;
            let end = start + 4 + d.size_in_bytes.max(0) as u64;
            let bytes = store.get_range(&path, start..end).await?;
            // 4 bytes of size (big-endian), then the magic and the bitmap.
            bytes.get(4..).ok_or_else(|| bad("short file"))?.to_vec()
        }
    };
    let magic = bitmap
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
        .ok_or_else(|| bad("short"))?;
    if magic != MAGIC {
        return Err(bad("unknown bitmap format"));
    }
    RoaringTreemap::deserialize_from(&bitmap[4..]).map_err(|e| bad(&e.to_string()))
}
