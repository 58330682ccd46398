//! A batch of raw Kafka messages as the consumer collected them: payloads copied into one
//! buffer (each value followed by a newline, ready for the JSON decoder), plus the Kafka
//! metadata of every message. Nothing here parses JSON.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// One message of a [`RawBatch`].
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub topic: usize,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Range<usize>>,
    /// The value without its trailing newline; `None` for a tombstone.
    pub value: Option<Range<usize>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Messages collected for one commit.
#[derive(Debug, Default)]
pub struct RawBatch {
    pub topics: Vec<Arc<str>>,
    pub data: Vec<u8>,
    pub messages: Vec<RawMessage>,
}

impl RawBatch {
    /// An empty batch with room for `messages` messages holding `bytes` bytes.
    pub fn with_capacity(messages: usize, bytes: usize) -> RawBatch {
        RawBatch {
            topics: Vec::new(),
            data: Vec::with_capacity(bytes),
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
        self.data.len()
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
        let topic = self.topic_index(topic);
        let key = key.map(|k| {
            let start = self.data.len();
            self.data.extend_from_slice(k);
            start..self.data.len()
        });
        let value = value.map(|v| {
            let start = self.data.len();
            self.data.extend_from_slice(v);
            let range = start..self.data.len();
            self.data.push(b'\n');
            range
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
        m.value.clone().map(|r| &self.data[r])
    }

    /// The value followed by its newline, as fed to the JSON decoder.
    pub fn value_line(&self, m: &RawMessage) -> Option<&[u8]> {
        m.value.clone().map(|r| &self.data[r.start..r.end + 1])
    }

    pub fn key(&self, m: &RawMessage) -> Option<&[u8]> {
        m.key.clone().map(|r| &self.data[r])
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
