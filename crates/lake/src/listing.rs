//! One listing of the lake: which schemas exist and which tables, views and external tables
//! each holds. Built by walking the object store; cheap for a local folder, one request per
//! table folder on object storage (hence the refresh interval in [`super::Lake::listing`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;

use super::{DefinitionKind, Lake, LakeError, META_DIR, valid_name};

/// What one schema holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SchemaListing {
    pub tables: BTreeSet<String>,
    pub views: BTreeSet<String>,
    pub external: BTreeSet<String>,
    /// Procedures (`CREATE PROCEDURE`), callable, not readable as tables.
    pub procedures: BTreeSet<String>,
}

/// Schemas of the lake by name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Listing {
    pub schemas: BTreeMap<String, SchemaListing>,
}

impl Listing {
    /// Delta tables of `schema`.
    pub fn tables(&self, schema: &str) -> impl Iterator<Item = &String> {
        self.schemas
            .get(schema)
            .into_iter()
            .flat_map(|s| s.tables.iter())
    }

    /// Every name in `schema`, tables, views and external tables.
    pub fn names(&self, schema: &str) -> Vec<String> {
        let Some(s) = self.schemas.get(schema) else {
            return Vec::new();
        };
        let mut all: BTreeSet<String> = s.tables.clone();
        all.extend(s.views.iter().cloned());
        all.extend(s.external.iter().cloned());
        all.into_iter().collect()
    }

    /// True if `schema.name` is listed as anything.
    pub fn contains(&self, schema: &str, name: &str) -> bool {
        self.schemas.get(schema).is_some_and(|s| {
            s.tables.contains(name) || s.views.contains(name) || s.external.contains(name)
        })
    }
}

fn last_segment(p: &ObjectPath) -> Option<String> {
    p.parts().next_back().map(|s| s.as_ref().to_string())
}

pub(super) async fn list(lake: &Lake) -> Result<Listing, LakeError> {
    let store = lake.store();
    let root = lake.object_path("");
    let mut listing = Listing::default();
    let top = match store.list_with_delimiter(Some(&root)).await {
        Ok(t) => t,
        Err(object_store::Error::NotFound { .. }) => return Ok(listing),
        Err(e) => return Err(e.into()),
    };
    for schema_dir in &top.common_prefixes {
        let Some(schema) = last_segment(schema_dir) else {
            continue;
        };
        if !valid_name(&schema) {
            continue;
        }
        let entry = listing.schemas.entry(schema.clone()).or_default();
        let tables = store.list_with_delimiter(Some(schema_dir)).await?;
        for table_dir in &tables.common_prefixes {
            let Some(table) = last_segment(table_dir) else {
                continue;
            };
            if !valid_name(&table) {
                continue;
            }
            if crate::has_delta_log(&*store, table_dir).await? {
                entry.tables.insert(table);
            }
        }
    }
    let markers = lake.object_path(&format!("{META_DIR}/schemas"));
    let marked: Vec<_> = list_or_empty(lake, &markers).await?;
    for p in marked {
        if let Some(s) = last_segment(&p).filter(|s| valid_name(s)) {
            listing.schemas.entry(s).or_default();
        }
    }
    for kind in [
        DefinitionKind::View,
        DefinitionKind::External,
        DefinitionKind::Procedure,
    ] {
        let dir = lake.object_path(&format!("{META_DIR}/{}", kind.dir()));
        for p in list_or_empty(lake, &dir).await? {
            let parts: Vec<String> = p.parts().map(|s| s.as_ref().to_string()).collect();
            let [.., schema, file] = parts.as_slice() else {
                continue;
            };
            let Some(name) = file.strip_suffix(".sql") else {
                continue;
            };
            if !valid_name(schema) || !valid_name(name) {
                continue;
            }
            let entry = listing.schemas.entry(schema.clone()).or_default();
            match kind {
                DefinitionKind::View => entry.views.insert(name.to_string()),
                DefinitionKind::External => entry.external.insert(name.to_string()),
                DefinitionKind::Procedure => entry.procedures.insert(name.to_string()),
            };
        }
    }
    Ok(listing)
}

async fn list_or_empty(lake: &Lake, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, LakeError> {
    match lake
        .store()
        .list(Some(prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
    {
        Ok(v) => Ok(v),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
