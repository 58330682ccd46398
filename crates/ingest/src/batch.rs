//! A batch of raw Kafka messages as the consumer collected them: values copied back to
//! back into one buffer, keys into another, plus the Kafka metadata of every message.
//! Once complete, a batch is frozen: the value buffer becomes an Arrow buffer that the
//! `_raw` column shares instead of copying. Nothing here parses JSON.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::StringArray;
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};

/// One message of a [`RawBatch`].
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub topic: usize,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Range<usize>>,
    /// The value's bytes; `None` for a tombstone.
    pub value: Option<Range<usize>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Messages collected for one commit.
#[derive(Debug, Default)]
pub struct RawBatch {
    pub topics: Vec<Arc<str>>,
    values: Vec<u8>,
    /// `values` once the batch is frozen.
    frozen: Option<Buffer>,
    keys: Vec<u8>,
    pub messages: Vec<RawMessage>,
}

impl RawBatch {
    /// An empty batch with room for `messages` messages holding `bytes` bytes.
    pub fn with_capacity(messages: usize, bytes: usize) -> RawBatch {
        RawBatch {
            topics: Vec::new(),
            values: Vec::with_capacity(bytes),
            frozen: None,
            keys: Vec::new(),
            messages: Vec::with_capacity(messages),
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.values().len() + self.keys.len()
    }

    fn values(&self) -> &[u8] {
        match &self.frozen {
            Some(b) => b.as_slice(),
            None => &self.values,
        }
    }

    /// Ends the batch: its values move into an Arrow buffer columns can share.
    pub fn freeze(&mut self) {
        if self.frozen.is_none() {
            self.frozen = Some(Buffer::from_vec(std::mem::take(&mut self.values)));
        }
    }

    /// The values of the messages at `indices` as a string array sharing this batch's
    /// buffer, when the batch is frozen and they lie back to back with none missing.
    pub fn shared_values(&self, indices: &[usize]) -> Option<StringArray> {
        let buffer = self.frozen.as_ref()?;
        let mut offsets = Vec::with_capacity(indices.len() + 1);
        let mut end = None;
        for &i in indices {
            let r = self.messages[i].value.as_ref()?;
            if end.is_some_and(|e| e != r.start) {
                return None;
            }
            offsets.push(i32::try_from(r.start).ok()?);
            end = Some(r.end);
        }
        let (Some(&base), Some(end)) = (offsets.first(), end) else {
            return None;
        };
        offsets.push(i32::try_from(end).ok()?);
        let offsets: Vec<i32> = offsets.into_iter().map(|o| o - base).collect();
        let values = buffer.slice_with_length(base as usize, end - base as usize);
        StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(offsets)), values, None).ok()
    }

    fn topic_index(&mut self, topic: &str) -> usize {
        match self.topics.iter().position(|t| &**t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(Arc::from(topic));
                self.topics.len() - 1
            }
        }
    }

    /// Adds a message, copying key and value.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) {
        if let Some(b) = self.frozen.take() {
            self.values = b.as_slice().to_vec();
        }
        let topic = self.topic_index(topic);
        let key = key.map(|k| {
            let start = self.keys.len();
            self.keys.extend_from_slice(k);
            start..self.keys.len()
        });
        let value = value.map(|v| {
            let start = self.values.len();
            self.values.extend_from_slice(v);
            start..self.values.len()
        });
        self.messages.push(RawMessage {
            topic,
            partition,
            offset,
            timestamp_ms,
            key,
            value,
            headers,
        });
    }

    pub fn topic(&self, m: &RawMessage) -> &str {
        &self.topics[m.topic]
    }

    pub fn value(&self, m: &RawMessage) -> Option<&[u8]> {
        m.value.clone().map(|r| &self.values()[r])
    }

    pub fn key(&self, m: &RawMessage) -> Option<&[u8]> {
        m.key.clone().map(|r| &self.keys[r])
    }

    /// The highest offset of each (topic, partition) among `indices`.
    pub fn last_offsets(&self, indices: &[usize]) -> BTreeMap<(Arc<str>, i32), i64> {
        let mut out: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
        for &i in indices {
            let m = &self.messages[i];
            let e = out
                .entry((self.topics[m.topic].clone(), m.partition))
                .or_insert(m.offset);
            *e = (*e).max(m.offset);
        }
        out
    }
}
