//! Answers of catalog queries, kept while the lake listing stays the same.
//!
//! Drivers ask the same `pg_catalog` questions on every connection: Npgsql (Power BI)
//! loads all 600 types with a seven-way join each time it opens one, and a refresh opens
//! many. Planning and running those joins costs tens of milliseconds; their answer depends
//! only on the catalog, which changes when the lake listing does. A statement the engine's
//! extension gives a key ([`crate::Extension::cache_key`]: catalog reads only, no
//! parameters, no volatile function) is answered from here when the same key was answered
//! under an equal listing no longer ago than the listing's refresh interval
//! (`lake.refresh_ms`), the same staleness the listing itself has.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use tidepool_lake::Listing;

/// Answers larger than this are not kept.
const MAX_ROWS: usize = 20_000;
/// Entries kept at most (distinct statement texts per user and path).
const MAX_ENTRIES: usize = 512;

#[derive(Debug)]
struct Entry {
    listing: Arc<Listing>,
    at: Instant,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// The cache; one per engine.
#[derive(Debug, Default)]
pub struct CatalogCache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A cached answer.
pub struct Hit {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl CatalogCache {
    /// The answer for `key`, if it was stored under a listing equal to `listing` less than
    /// `ttl` ago.
    pub fn get(&self, key: &str, listing: &Arc<Listing>, ttl: Duration) -> Option<Hit> {
        let entries = self.entries.lock();
        let e = entries.get(key)?;
        if e.at.elapsed() > ttl || !(Arc::ptr_eq(&e.listing, listing) || *e.listing == **listing) {
            return None;
        }
        Some(Hit {
            schema: e.schema.clone(),
            batches: e.batches.clone(),
        })
    }

    /// Forgets every answer (grants or policies changed: they are not in the listing).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Keeps an answer (unless it is large).
    pub fn put(
        &self,
        key: String,
        listing: Arc<Listing>,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > MAX_ROWS {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                listing,
                at: Instant::now(),
                schema,
                batches: batches.to_vec(),
            },
        );
    }
}
