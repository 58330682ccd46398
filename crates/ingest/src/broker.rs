//! The embedded dev broker: librdkafka's in-process mock cluster, a Kafka-protocol broker
//! on a loopback port that any Kafka client can produce to. It keeps messages in memory:
//! they are gone when the process stops (the lake keeps what was ingested).

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

use super::IngestError;

/// A running embedded broker; stops when dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts the broker with `topics` created with `partitions` partitions each.
    pub fn start(topics: &[String], partitions: i32) -> Result<EmbeddedBroker, IngestError> {
        let topics = topics.to_vec();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // The mock cluster is not Send: it lives on its own thread until asked to stop.
        let thread = std::thread::Builder::new()
            .name("tidepool-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("cannot create topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| IngestError::Kafka(format!("cannot start the embedded broker: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| IngestError::Kafka("the embedded broker did not start".into()))?
            .map_err(|e| IngestError::Kafka(format!("the embedded broker did not start: {e}")))?;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
