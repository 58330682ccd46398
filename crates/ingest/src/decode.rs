//! JSON messages to Arrow rows. The whole batch is decoded in one pass with arrow-json;
//! when that fails, the batch is split in halves until every bad message is isolated, so
//! one malformed message costs a few extra passes over its neighbours and never stalls
//! or drops the rest. Without a declared schema, messages with fields the table does not
//! have widen the schema (new columns, new nested fields) and the batch is decoded again;
//! messages that still fail become dead letters with the decoder's reason.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, MapBuilder, MapFieldNames, RecordBatch,
    RecordBatchOptions, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::json::ReaderBuilder;

use super::batch::{RawBatch, RawMessage};
use super::schema::{self, RAW_COLUMN};

/// Decoded rows with their message indices, and the messages that failed.
type Decodedpiece = (Vec<(RecordBatch, Vec<usize>)>, Vec<DeadLetter>);

/// Messages decoded into one Arrow batch.
const DECODE_CHUNK: usize = 8192;

/// At most this many messages are parsed to infer or widen a schema.
const INFER_SAMPLE: usize = 1000;

/// A message that could not become a bronze row.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Index of the message in its [`RawBatch`].
    pub index: usize,
    pub reason: String,
}

/// The result of decoding a batch.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Bronze rows (data and metadata columns), in table column order.
    pub rows: Vec<RecordBatch>,
    /// For each of `rows`, the index in the [`RawBatch`] of the message of each row.
    pub indices: Vec<Vec<usize>>,
    pub dead: Vec<DeadLetter>,
    /// True when this batch widened the table schema.
    pub schema_changed: bool,
}

impl Decoded {
    pub fn row_count(&self) -> usize {
        self.rows.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Decodes JSON messages against a bronze table schema that it widens when allowed.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    table: SchemaRef,
    data: SchemaRef,
    declared: bool,
    max_message_bytes: usize,
}

impl JsonDecoder {
    /// A decoder for a new table: `data` columns (declared or empty) then metadata columns.
    pub fn new(data: SchemaRef, declared: bool, raw: bool, max_message_bytes: usize) -> Self {
        let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(schema::meta_fields(raw));
        JsonDecoder {
            table: Arc::new(Schema::new(fields)),
            data,
            declared,
            max_message_bytes,
        }
    }

    /// Continues an existing table with the schema it has. A declared schema's columns that
    /// the table lacks are added.
    pub fn adopt(&mut self, table: SchemaRef) {
        let data = schema::data_schema(&table);
        self.table = table;
        if self.declared {
            let declared = self.data.clone();
            self.data = data;
            self.widen_to(&declared);
        } else {
            self.data = data;
        }
    }

    /// The bronze table schema rows are produced in.
    pub fn table_schema(&self) -> SchemaRef {
        self.table.clone()
    }

    fn widen_to(&mut self, incoming: &Schema) -> bool {
        let Some(widened) = schema::widen(&self.data, incoming) else {
            return false;
        };
        let mut fields: Vec<Field> = Vec::new();
        for f in self.table.fields() {
            if schema::is_meta(f.name()) {
                fields.push(f.as_ref().clone());
            } else if let Ok(w) = widened.field_with_name(f.name()) {
                fields.push(w.clone());
            }
        }
        for w in widened.fields() {
            if self.table.field_with_name(w.name()).is_err() {
                fields.push(w.as_ref().clone());
            }
        }
        self.table = Arc::new(Schema::new(fields));
        self.data = schema::data_schema(&self.table);
        true
    }

    /// Decodes the messages at `indices` of `batch`; `ingested_at_us` stamps every row.
    pub fn decode(&mut self, batch: &RawBatch, indices: &[usize], ingested_at_us: i64) -> Decoded {
        let mut out = Decoded::default();
        let mut candidates = Vec::with_capacity(indices.len());
        for &i in indices {
            match precheck(batch, &batch.messages[i], self.max_message_bytes) {
                Ok(()) => candidates.push(i),
                Err(reason) => out.dead.push(DeadLetter { index: i, reason }),
            }
        }
        if !self.declared && self.data.fields().is_empty() && !candidates.is_empty() {
            out.schema_changed |= self.evolve(batch, &candidates);
        }
        let mut attempts = 0;
        loop {
            let mut chunks = Vec::new();
            let mut bad = Vec::new();
            if !candidates.is_empty() {
                // Cache-sized pieces (one huge decode costs more in memory traffic than
                // in parsing), decoded on every core; results keep message order.
                let pieces: Vec<&[usize]> = candidates.chunks(DECODE_CHUNK).collect();
                let this = &*self;
                let one = |p: &&[usize]| -> Decodedpiece {
                    // A decoder fault must not lose messages: they become dead letters.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        this.decode_piece(batch, p)
                    }))
                    .unwrap_or_else(|_| {
                        let dead = p
                            .iter()
                            .map(|&index| DeadLetter {
                                index,
                                reason: "internal decoder failure".into(),
                            })
                            .collect();
                        (Vec::new(), dead)
                    })
                };
                let results: Vec<Decodedpiece> = match decode_pool() {
                    Some(pool) if pieces.len() > 1 => {
                        use rayon::prelude::*;
                        pool.install(|| pieces.par_iter().map(one).collect())
                    }
                    _ => pieces.iter().map(one).collect(),
                };
                for (c, b) in results {
                    chunks.extend(c);
                    bad.extend(b);
                }
            }
            if !self.declared && !bad.is_empty() && attempts < 3 {
                let failing: Vec<usize> = bad.iter().map(|d: &DeadLetter| d.index).collect();
                if self.evolve(batch, &failing) {
                    out.schema_changed = true;
                    attempts += 1;
                    continue;
                }
            }
            out.dead.extend(bad);
            for (data, idx) in chunks {
                match self.assemble(batch, &idx, data, ingested_at_us) {
                    Ok(rows) => {
                        out.rows.push(rows);
                        out.indices.push(idx);
                    }
                    Err(e) => out.dead.extend(idx.into_iter().map(|index| DeadLetter {
                        index,
                        reason: format!("cannot build row: {e}"),
                    })),
                }
            }
            out.dead.sort_by_key(|d| d.index);
            return out;
        }
    }

    /// Widens the schema with what the messages at `indices` hold. Looks at a sample: a
    /// field the sample misses makes its messages fail strict decoding, and those are
    /// looked at next.
    fn evolve(&mut self, batch: &RawBatch, indices: &[usize]) -> bool {
        let values = indices
            .iter()
            .take(INFER_SAMPLE)
            .filter_map(|&i| batch.value(&batch.messages[i]));
        match schema::infer(values) {
            Some(inferred) => self.widen_to(&inferred),
            None => false,
        }
    }

    fn decode_piece(&self, batch: &RawBatch, piece: &[usize]) -> Decodedpiece {
        let mut chunks = Vec::new();
        let mut bad = Vec::new();
        self.bisect(batch, piece, &mut chunks, &mut bad);
        (chunks, bad)
    }

    fn bisect(
        &self,
        batch: &RawBatch,
        indices: &[usize],
        chunks: &mut Vec<(RecordBatch, Vec<usize>)>,
        bad: &mut Vec<DeadLetter>,
    ) {
        match self.try_decode(batch, indices) {
            Ok(rows) => chunks.push((rows, indices.to_vec())),
            Err(reason) if indices.len() == 1 => bad.push(DeadLetter {
                index: indices[0],
                reason,
            }),
            Err(_) => {
                let (a, b) = indices.split_at(indices.len() / 2);
                self.bisect(batch, a, chunks, bad);
                self.bisect(batch, b, chunks, bad);
            }
        }
    }

    fn try_decode(&self, batch: &RawBatch, indices: &[usize]) -> Result<RecordBatch, String> {
        if self.data.fields().is_empty() {
            return empty_objects(batch, indices);
        }
        let mut decoder = ReaderBuilder::new(self.data.clone())
            .with_batch_size(indices.len() + 1)
            .with_strict_mode(!self.declared)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for (k, &i) in indices.iter().enumerate() {
            let line = batch
                .value(&batch.messages[i])
                .ok_or_else(|| "message has no value".to_string())?;
            let used = decoder.decode(line).map_err(|e| e.to_string())?;
            if used != line.len() || decoder.len() > k + 1 {
                return Err("message holds more than one JSON value".into());
            }
            if decoder.len() != k + 1 || decoder.has_partial_record() {
                return Err("message is not one complete JSON object".into());
            }
        }
        decoder
            .flush()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no rows decoded".to_string())
    }

    /// Adds the metadata columns to decoded data columns, in table order.
    fn assemble(
        &self,
        batch: &RawBatch,
        idx: &[usize],
        data: RecordBatch,
        ingested_at_us: i64,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut fields = Vec::with_capacity(self.table.fields().len());
        let mut columns = Vec::with_capacity(self.table.fields().len());
        for f in self.table.fields() {
            let col = if schema::is_meta(f.name()) {
                meta_column(f.name(), batch, idx, ingested_at_us)
            } else {
                match data.column_by_name(f.name()) {
                    Some(c) => c.clone(),
                    None => arrow::array::new_null_array(f.data_type(), idx.len()),
                }
            };
            fields.push(Field::new(
                f.name(),
                col.data_type().clone(),
                f.is_nullable(),
            ));
            columns.push(col);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(idx.len())),
        )
    }
}

/// The threads that decode the pieces of a batch, one per core. They live as long as the
/// process: threads started per batch would each leave their allocator heap behind.
fn decode_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("tidepool-decode-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

fn precheck(batch: &RawBatch, m: &RawMessage, max: usize) -> Result<(), String> {
    let Some(v) = batch.value(m) else {
        return Err("tombstone: the message has no value".into());
    };
    if v.len() > max {
        return Err(format!(
            "message of {} bytes is over the limit of {max} bytes (max_message_bytes)",
            v.len()
        ));
    }
    if let Err(e) = std::str::from_utf8(v) {
        return Err(format!("value is not valid UTF-8 ({e})"));
    }
    match v.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err("value is empty".into()),
        Some(b'{') => Ok(()),
        Some(_) => Err("value is not a JSON object".into()),
    }
}

fn empty_objects(batch: &RawBatch, indices: &[usize]) -> Result<RecordBatch, String> {
    for &i in indices {
        let v = batch.value(&batch.messages[i]).unwrap_or_default();
        serde_json::from_slice::<serde::de::IgnoredAny>(v).map_err(|e| e.to_string())?;
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )
    .map_err(|e| e.to_string())
}

fn meta_column(name: &str, batch: &RawBatch, idx: &[usize], now_us: i64) -> ArrayRef {
    let msgs = idx.iter().map(|&i| &batch.messages[i]);
    match name {
        "_topic" => {
            let mut b = StringBuilder::with_capacity(idx.len(), idx.len() * 8);
            msgs.for_each(|m| b.append_value(batch.topic(m)));
            Arc::new(b.finish())
        }
        "_partition" => {
            let mut b = Int32Builder::with_capacity(idx.len());
            msgs.for_each(|m| b.append_value(m.partition));
            Arc::new(b.finish())
        }
        "_offset" => {
            let mut b = Int64Builder::with_capacity(idx.len());
            msgs.for_each(|m| b.append_value(m.offset));
            Arc::new(b.finish())
        }
        "_timestamp" => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(idx.len());
            msgs.for_each(|m| b.append_option(m.timestamp_ms.map(|t| t * 1000)));
            Arc::new(b.finish().with_timezone("UTC"))
        }
        "_ingested_at" => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(idx.len());
            msgs.for_each(|_| b.append_value(now_us));
            Arc::new(b.finish().with_timezone("UTC"))
        }
        "_key" => {
            let mut b = StringBuilder::new();
            msgs.for_each(|m| match batch.key(m) {
                Some(k) => b.append_value(String::from_utf8_lossy(k)),
                None => b.append_null(),
            });
            Arc::new(b.finish())
        }
        "_headers" => headers_column(msgs),
        RAW_COLUMN => {
            if let Some(shared) = batch.shared_values(idx) {
                return Arc::new(shared);
            }
            let bytes = idx
                .iter()
                .filter_map(|&i| batch.messages[i].value.as_ref().map(|r| r.len()))
                .sum();
            let mut b = StringBuilder::with_capacity(idx.len(), bytes);
            msgs.for_each(|m| match batch.value(m) {
                Some(v) => b.append_value(String::from_utf8_lossy(v)),
                None => b.append_null(),
            });
            Arc::new(b.finish())
        }
        _ => arrow::array::new_null_array(&arrow::datatypes::DataType::Utf8, idx.len()),
    }
}

fn headers_column<'a>(msgs: impl Iterator<Item = &'a RawMessage>) -> ArrayRef {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for m in msgs {
        if m.headers.is_empty() {
            b.append(false).ok();
            continue;
        }
        for (k, v) in &m.headers {
            b.keys().append_value(k);
            match v {
                Some(v) => b.values().append_value(String::from_utf8_lossy(v)),
                None => b.values().append_null(),
            }
        }
        b.append(true).ok();
    }
    Arc::new(b.finish())
}

/// Columns of a dead-letter table: the raw bytes, where they came from and why they failed.
pub fn dead_letter_batch(
    batch: &RawBatch,
    dead: &[DeadLetter],
    now_us: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let idx: Vec<usize> = dead.iter().map(|d| d.index).collect();
    let mut key = BinaryBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut reason = StringBuilder::new();
    for d in dead {
        let m = &batch.messages[d.index];
        key.append_option(batch.key(m));
        raw.append_option(batch.value(m));
        reason.append_value(&d.reason);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("_topic", meta_column("_topic", batch, &idx, now_us)),
        ("_partition", meta_column("_partition", batch, &idx, now_us)),
        ("_offset", meta_column("_offset", batch, &idx, now_us)),
        ("_timestamp", meta_column("_timestamp", batch, &idx, now_us)),
        ("_key", Arc::new(key.finish())),
        (
            "_headers",
            headers_column(idx.iter().map(|&i| &batch.messages[i])),
        ),
        ("_raw", Arc::new(raw.finish())),
        ("_reason", Arc::new(reason.finish())),
        (
            "_ingested_at",
            meta_column("_ingested_at", batch, &idx, now_us),
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| {
            let nullable = !matches!(
                *n,
                "_topic" | "_partition" | "_offset" | "_reason" | "_ingested_at"
            );
            Field::new(*n, c.data_type().clone(), nullable)
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type};

    fn batch(values: &[Option<&[u8]>]) -> RawBatch {
        let mut b = RawBatch::default();
        for (i, v) in values.iter().enumerate() {
            b.push("t", 0, i as i64, Some(1000), Some(b"k"), *v, vec![]);
        }
        b
    }

    fn all(b: &RawBatch) -> Vec<usize> {
        (0..b.len()).collect()
    }

    #[test]
    fn bad_messages_are_isolated_and_the_rest_decode() {
        let b = batch(&[
            Some(br#"{"id": 1, "name": "a"}"#),
            Some(b"{not json"),
            Some(br#"{"id": 3, "name": "c"}"#),
            None,
            Some(&[0xff, 0xfe]),
            Some(br#"{"id": 6}{"id": 7}"#),
            Some(b"[1,2]"),
            Some(br#"{"id": "eight"}"#),
            Some(br#"{"id": 9, "name": "i"}"#),
        ]);
        let mut d = JsonDecoder::new(Arc::new(Schema::empty()), false, true, 1 << 20);
        let out = d.decode(&b, &all(&b), 0);
        assert_eq!(out.row_count(), 3, "dead: {:?}", out.dead);
        let dead: Vec<usize> = out.dead.iter().map(|x| x.index).collect();
        assert_eq!(dead, vec![1, 3, 4, 5, 6, 7]);
        assert!(out.dead[1].reason.contains("tombstone"));
        assert!(out.dead[2].reason.contains("UTF-8"));
        let ids: Vec<i64> = out
            .rows
            .iter()
            .flat_map(|r| {
                r.column_by_name("id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, vec![1, 3, 9]);
        let schema = d.table_schema();
        assert_eq!(
            schema.field_with_name("_offset").unwrap().data_type(),
            &DataType::Int64
        );
        assert!(schema.field_with_name("_raw").is_ok());
    }

    #[test]
    fn large_batches_decode_in_parallel_pieces_in_order() {
        let values: Vec<Vec<u8>> = (0..20_000)
            .map(|i| {
                if i % 1000 == 7 {
                    b"{broken".to_vec()
                } else {
                    format!(r#"{{"id": {i}, "tags": ["a", "b"]}}"#).into_bytes()
                }
            })
            .collect();
        let refs: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_slice())).collect();
        let b = batch(&refs);
        let mut d = JsonDecoder::new(Arc::new(Schema::empty()), false, true, 1 << 20);
        let out = d.decode(&b, &all(&b), 0);
        assert_eq!(out.dead.len(), 20);
        assert!(out.dead.iter().all(|x| x.index % 1000 == 7));
        let offsets: Vec<i64> = out
            .rows
            .iter()
            .flat_map(|r| {
                r.column_by_name("_offset")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(offsets.len(), 19_980);
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "rows keep message order"
        );
    }

    #[test]
    fn new_fields_widen_the_schema_and_old_rows_get_nulls() {
        let b1 = batch(&[Some(br#"{"id": 1}"#)]);
        let mut d = JsonDecoder::new(Arc::new(Schema::empty()), false, false, 1 << 20);
        let out = d.decode(&b1, &all(&b1), 0);
        assert_eq!(out.row_count(), 1);
        let b2 = batch(&[
            Some(br#"{"id": 2}"#),
            Some(br#"{"id": 3, "extra": {"a": true}}"#),
        ]);
        let out = d.decode(&b2, &all(&b2), 0);
        assert!(out.schema_changed);
        assert_eq!(out.row_count(), 2, "{:?}", out.dead);
        let rows = &out.rows[0];
        let extra = rows.column_by_name("extra").unwrap();
        assert!(extra.is_null(0) && !extra.is_null(1));
    }

    #[test]
    fn declared_schema_ignores_extra_fields_and_rejects_conflicts() {
        let data = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut d = JsonDecoder::new(data, true, true, 64);
        let big = format!(r#"{{"id": 1, "pad": "{}"}}"#, "x".repeat(100));
        let b = batch(&[
            Some(br#"{"id": 1, "other": 2}"#),
            Some(br#"{"other": 2}"#),
            Some(br#"{"id": "x"}"#),
            Some(big.as_bytes()),
        ]);
        let out = d.decode(&b, &all(&b), 0);
        assert_eq!(out.row_count(), 1);
        let dead: Vec<usize> = out.dead.iter().map(|x| x.index).collect();
        assert_eq!(dead, vec![1, 2, 3]);
        assert!(out.dead[2].reason.contains("limit"));
        let dl = dead_letter_batch(&b, &out.dead, 0).unwrap();
        assert_eq!(dl.num_rows(), 3);
    }
}
