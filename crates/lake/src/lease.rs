//! Leases: one process at a time, among those sharing a lake, holds a named duty (the
//! `[schedule]` builds, bronze maintenance). A lease is a versioned document of the lake,
//! `_tidepool/leases/<name>/<n>.json` holding `{holder, until_ms}`; taking or renewing it
//! writes version `n + 1` with a create-only put, so of two processes that read version
//! `n` only one succeeds. A lease its holder stopped renewing (killed, frozen, cut off
//! from the store) expires and is taken over. Expiry compares the writer's clock with the
//! reader's: the nodes' clocks must agree to well within the lease time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::{Lake, LakeError};

/// What a lease document holds.
#[derive(Debug, Deserialize)]
struct Record {
    holder: String,
    until_ms: i64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Lake {
    /// Takes or renews lease `name` for `holder` for `ttl` from now; false when another
    /// holder's lease has not expired (or another process took or renewed it first).
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LakeError> {
        let dir = format!("leases/{name}");
        let next = match self.latest_meta_version(&dir).await {
            Ok(None) => 0,
            Ok(Some((n, bytes))) => {
                // An unreadable record is taken over like an expired one.
                if let Ok(r) = serde_json::from_slice::<Record>(&bytes)
                    && r.holder != holder
                    && r.until_ms > now_ms()
                {
                    return Ok(false);
                }
                n + 1
            }
            // Changed while read: someone else is writing it.
            Err(LakeError::SerializationFailure(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let until_ms = now_ms() + ttl.as_millis() as i64;
        let bytes = serde_json::json!({ "holder": holder, "until_ms": until_ms })
            .to_string()
            .into_bytes();
        self.write_meta_version(&dir, next, bytes).await
    }
}

/// Keeps lease `name` for a holder while it lives: tries to take it, and renews it, every
/// third of its time. [`LeaseKeeper::held`] says whether the last attempt succeeded; a
/// failed renewal (the store unreachable) counts as lost, since the lease may expire
/// before the next one.
pub struct LeaseKeeper {
    held: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    pub fn start(lake: Arc<Lake>, name: &str, holder: &str, ttl: Duration) -> LeaseKeeper {
        let held = Arc::new(AtomicBool::new(false));
        let (name, holder) = (name.to_string(), holder.to_string());
        let flag = held.clone();
        let task = tokio::spawn(async move {
            loop {
                let now = match lake.hold_lease(&name, &holder, ttl).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(lease = %name, error = %e, "cannot renew the lease");
                        false
                    }
                };
                if flag.swap(now, Ordering::SeqCst) != now {
                    if now {
                        tracing::info!(lease = %name, holder = %holder, "lease taken: this node runs it");
                    } else {
                        tracing::info!(lease = %name, "lease lost or held elsewhere: another node runs it");
                    }
                }
                tokio::time::sleep(ttl / 3).await;
            }
        });
        LeaseKeeper { held, task }
    }

    /// True while this process holds the lease.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake(dir: &std::path::Path) -> Arc<Lake> {
        Lake::open(&crate::LakeConfig {
            root: dir.display().to_string(),
            ..Default::default()
        })
        .unwrap()
    }

    /// One holder at a time; another takes over once the holder stops renewing.
    #[tokio::test]
    async fn one_holder_until_it_stops_renewing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let ttl = Duration::from_millis(300);
        assert!(lake.hold_lease("schedule", "a", ttl).await.unwrap());
        assert!(!lake.hold_lease("schedule", "b", ttl).await.unwrap());
        assert!(
            lake.hold_lease("schedule", "a", ttl).await.unwrap(),
            "renewed"
        );
        assert!(
            lake.hold_lease("maintenance", "b", ttl).await.unwrap(),
            "leases are apart"
        );
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(
            lake.hold_lease("schedule", "b", ttl).await.unwrap(),
            "taken over"
        );
        assert!(!lake.hold_lease("schedule", "a", ttl).await.unwrap());
    }

    /// Of many processes racing for a free lease, exactly one gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_takers_get_one_lease() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let takers = (0..8).map(|i| {
            let lake = lake.clone();
            tokio::spawn(async move {
                lake.hold_lease("schedule", &format!("n{i}"), Duration::from_secs(30))
                    .await
                    .unwrap()
            })
        });
        let won = futures::future::join_all(takers)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, 1);
    }
}
