//! One Delta commit of a table's metadata (configuration, description, schema field
//! metadata), shared by constraints, comments and column changes.

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::DeltaOperation;

use crate::LakeError;

/// One Delta commit of `table`'s metadata as `change` makes it (none when nothing
/// changes): its configuration, description or schema (field metadata only).
pub(crate) async fn commit_metadata(
    table: &DeltaTable,
    change: impl FnOnce(
        deltalake::kernel::Metadata,
    ) -> deltalake::DeltaResult<deltalake::kernel::Metadata>,
) -> Result<(), LakeError> {
    let snapshot = table.snapshot()?;
    let before = snapshot.metadata().clone();
    let after = change(before.clone())?;
    if after == before {
        return Ok(());
    }
    let operation = if after.configuration() != before.configuration() {
        DeltaOperation::SetTableProperties {
            properties: after.configuration().clone(),
        }
    } else {
        DeltaOperation::UpdateTableMetadata {
            metadata_update: deltalake::operations::update_table_metadata::TableMetadataUpdate {
                name: None,
                description: after.description().map(str::to_string),
            },
        }
    };
    CommitBuilder::default()
        .with_actions(vec![Action::Metadata(after)])
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    Ok(())
}
