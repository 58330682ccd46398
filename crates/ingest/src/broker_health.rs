//! Whether the brokers a source reads from are answering, judged from librdkafka's
//! statistics (every 2 s): a broker that is connected but has requests waiting and has
//! sent nothing for [`SILENT_AFTER`] is *unresponsive* (a frozen broker keeps its TCP
//! connection, so librdkafka reports it up until `socket.timeout.ms`, 60 s); one that has
//! not been connected for as long is *down*. Shown in `system.ingest` (`broker_state`,
//! `last_broker_contact`), in `/metrics`, and logged once when it starts and once when it
//! ends.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::statistics::Statistics;

/// How long a broker may keep a request unanswered (or stay disconnected) before the
/// source reports it.
pub const SILENT_AFTER: Duration = Duration::from_secs(6);

/// What a source knows of its brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BrokerState {
    /// No statistics yet.
    #[default]
    Unknown,
    Up,
    /// Connected, requests waiting, nothing received for [`SILENT_AFTER`].
    Unresponsive,
    /// Not connected for [`SILENT_AFTER`].
    Down,
}

impl BrokerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Unknown => "unknown",
            BrokerState::Up => "up",
            BrokerState::Unresponsive => "unresponsive",
            BrokerState::Down => "down",
        }
    }
}

/// The state and the last time any broker of the source sent something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerHealth {
    pub state: BrokerState,
    pub last_contact: Option<DateTime<Utc>>,
    /// The broker that is silent or down, when one is.
    pub broker: Option<String>,
}

/// One broker in one statistics report.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// librdkafka's connection state: `INIT`, `UP`, `DOWN`, `CONNECT`, ...
    pub state: String,
    /// Requests sent and not answered yet.
    pub waiting: i64,
    /// Since the last bytes received; `None` before the first.
    pub rx_idle: Option<Duration>,
}

/// The brokers of a statistics report that carry the source's traffic: the ones learned
/// from metadata, or the bootstrap ones before any is.
pub fn samples(stats: &Statistics) -> Vec<Sample> {
    let sample = |b: &rdkafka::statistics::Broker| Sample {
        name: b.nodename.clone(),
        state: b.state.clone(),
        waiting: b.waitresp_cnt,
        rx_idle: u64::try_from(b.rxidle).ok().map(Duration::from_micros),
    };
    let learned: Vec<Sample> = stats
        .brokers
        .values()
        .filter(|b| b.source == "learned")
        .map(sample)
        .collect();
    if !learned.is_empty() {
        return learned;
    }
    stats
        .brokers
        .values()
        .filter(|b| b.source == "configured")
        .map(sample)
        .collect()
}

/// Follows the samples of one source over time.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Since when each broker has been seen not connected.
    down_since: HashMap<String, DateTime<Utc>>,
    health: BrokerHealth,
}

impl Tracker {
    /// Takes one report; returns the new health when the state changed. `joining`: the
    /// consumer group is being formed, when a broker legitimately holds a JoinGroup or
    /// SyncGroup request unanswered (for as long as the group waits for members).
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        samples: &[Sample],
        joining: bool,
    ) -> Option<BrokerHealth> {
        let silent_after = chrono::TimeDelta::from_std(SILENT_AFTER).unwrap_or_default();
        let mut any_up = false;
        let mut worst: Option<(BrokerState, &str)> = None;
        let mut contact = self.health.last_contact;
        for s in samples {
            if let Some(idle) = s.rx_idle.and_then(|d| chrono::TimeDelta::from_std(d).ok()) {
                let at = now - idle;
                contact = Some(contact.map_or(at, |c| c.max(at)));
            }
            match s.state.as_str() {
                // Known but never needed (sparse connections): nothing to say.
                "INIT" => {
                    self.down_since.remove(&s.name);
                }
                "UP" => {
                    self.down_since.remove(&s.name);
                    any_up = true;
                    let silent =
                        s.waiting > 0 && !joining && s.rx_idle.is_some_and(|d| d >= SILENT_AFTER);
                    if silent && worst.is_none() {
                        worst = Some((BrokerState::Unresponsive, &s.name));
                    }
                }
                _ => {
                    let since = *self.down_since.entry(s.name.clone()).or_insert(now);
                    if now - since >= silent_after {
                        worst = Some((BrokerState::Down, &s.name));
                    }
                }
            }
        }
        let (state, broker) = match worst {
            Some((state, name)) => (state, Some(name.to_string())),
            None if any_up => (BrokerState::Up, None),
            // Connecting for the first time, or down for less than SILENT_AFTER.
            None => (self.health.state, self.health.broker.clone()),
        };
        let changed = state != self.health.state;
        self.health = BrokerHealth {
            state,
            last_contact: contact,
            broker,
        };
        changed.then(|| self.health.clone())
    }

    pub fn health(&self) -> &BrokerHealth {
        &self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, waiting: i64, idle_s: u64) -> Sample {
        Sample {
            name: name.into(),
            state: "UP".into(),
            waiting,
            rx_idle: Some(Duration::from_secs(idle_s)),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn a_connected_broker_that_stops_answering_is_unresponsive_then_up_again() {
        let mut t = Tracker::default();
        assert_eq!(
            t.observe(at(0), &[up("b:9092", 1, 0)], false)
                .map(|h| h.state),
            Some(BrokerState::Up)
        );
        // Frozen: the fetch stays unanswered.
        assert_eq!(t.observe(at(2), &[up("b:9092", 1, 2)], false), None);
        assert_eq!(t.observe(at(4), &[up("b:9092", 2, 4)], false), None);
        let h = t.observe(at(6), &[up("b:9092", 2, 6)], false);
        assert_eq!(h.as_ref().map(|h| h.state), Some(BrokerState::Unresponsive));
        assert_eq!(h.as_ref().and_then(|h| h.last_contact), Some(at(0)));
        assert_eq!(h.and_then(|h| h.broker).as_deref(), Some("b:9092"));
        assert_eq!(t.observe(at(8), &[up("b:9092", 2, 8)], false), None);
        let back = t.observe(at(10), &[up("b:9092", 1, 0)], false);
        assert_eq!(back.as_ref().map(|h| h.state), Some(BrokerState::Up));
        assert_eq!(back.and_then(|h| h.last_contact), Some(at(10)));
    }

    #[test]
    fn an_idle_connection_with_nothing_asked_is_not_silent() {
        let mut t = Tracker::default();
        t.observe(at(0), &[up("b", 0, 0)], false);
        assert_eq!(t.observe(at(30), &[up("b", 0, 30)], false), None);
        assert_eq!(t.health().state, BrokerState::Up);
    }

    #[test]
    fn a_join_held_by_the_coordinator_is_not_silence() {
        let mut t = Tracker::default();
        t.observe(at(0), &[up("b", 1, 0)], false);
        assert_eq!(t.observe(at(20), &[up("b", 1, 20)], true), None);
        assert_eq!(t.health().state, BrokerState::Up);
    }

    #[test]
    fn a_broker_disconnected_for_a_while_is_down() {
        let down = |s: &str| Sample {
            name: "b".into(),
            state: s.into(),
            waiting: 0,
            rx_idle: None,
        };
        let mut t = Tracker::default();
        t.observe(at(0), &[up("b", 1, 0)], false);
        // A reconnect cycle shorter than SILENT_AFTER is not reported.
        assert_eq!(t.observe(at(2), &[down("TRY_CONNECT")], false), None);
        assert_eq!(t.observe(at(4), &[up("b", 1, 0)], false), None);
        assert_eq!(t.observe(at(6), &[down("CONNECT")], false), None);
        assert_eq!(t.observe(at(10), &[down("DOWN")], false), None);
        assert_eq!(
            t.observe(at(12), &[down("TRY_CONNECT")], false)
                .map(|h| h.state),
            Some(BrokerState::Down)
        );
        // Another broker of the cluster still answering does not hide it.
        assert_eq!(
            t.observe(at(14), &[down("DOWN"), up("c", 1, 0)], false),
            None
        );
        assert_eq!(t.health().state, BrokerState::Down);
    }
}
