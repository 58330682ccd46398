//! Several ingest nodes in one consumer group against a real Kafka-protocol broker
//! process (tansu): static membership from `[node] name`, a node killed with SIGKILL and
//! restarted under its name, another frozen with SIGSTOP past its session timeout (a
//! zombie when it thaws), and every message landing exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::TestServer;
use crate::ingest::landed;
use crate::kafka_e2e::{Tansu, produce_orders, tidepool, write_config};

/// Commits of a Delta log by node name (`tidepool.node` in each commit's metadata), with
/// the commit's timestamp in milliseconds.
fn commits_by_node(log: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(log) else {
        return out;
    };
    for entry in dir.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().ends_with(".json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let Ok(action) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let info = &action["commitInfo"];
            if let (Some(node), Some(at)) =
                (info["tidepool.node"].as_str(), info["timestamp"].as_i64())
            {
                out.entry(node.to_string()).or_default().push(at);
            }
        }
    }
    out
}

fn node(config: &Path, name: &str) -> Child {
    tidepool(config, &["--node-name", name, "--roles", "ingest", "serve"])
        .spawn()
        .expect("tidepool starts")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Three nodes, six partitions, 100,000 messages (1% malformed). Node b is killed with
/// SIGKILL and restarted under its name; node c is frozen for 20 s (its 6 s session
/// expires, its partitions move, and it thaws as a zombie holding a batch). Afterwards
/// every (partition, offset) is in bronze or its dead letters exactly once, commits came
/// from every node, and the restarted node committed again soon after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tansu_three_nodes_through_a_kill_and_a_freeze() {
    let broker = Tansu::start();
    broker.create_topic("orders", 6).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.brokers, "");
    let log = dir.path().join("lake/bronze/orders/_delta_log");

    const TOTAL: i64 = 100_000;
    let producing = produce_orders(&broker.brokers, TOTAL, 6, 40, 500);

    let mut a = node(&config, "node-a");
    let mut b = node(&config, "node-b");
    let mut c = node(&config, "node-c");
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits_by_node(&log).len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        commits_by_node(&log).len(),
        3,
        "every node commits: {:?}",
        commits_by_node(&log).keys()
    );

    // SIGKILL node b mid-stream and start it again under the same name.
    b.kill().expect("SIGKILL");
    let _ = b.wait();
    let restarted_at = now_ms();
    let mut b = node(&config, "node-b");
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed_after = loop {
        let after = commits_by_node(&log)
            .get("node-b")
            .and_then(|at| at.iter().copied().filter(|&t| t >= restarted_at).min());
        if let Some(t) = after {
            break t - restarted_at;
        }
        assert!(
            Instant::now() < deadline,
            "node-b never committed after its restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("node-b committed again {resumed_after} ms after it was started again");

    // Freeze node c past its session timeout, then let it go on as a zombie.
    signal(&c, "-STOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    signal(&c, "-CONT");

    producing.await.expect("producer finished");
    // Everything is consumed by the nodes themselves; then they stop.
    let lake = tempfile::TempDir::with_prefix("unused").expect("tempdir");
    let settings = crate::common::settings(&dir.path().join("lake"), "");
    let server = TestServer::start_with(lake, settings).await;
    let conn = server.connect().await;
    let count = "SELECT (SELECT count(*) FROM bronze.orders) + (SELECT count(*) FROM bronze.orders__dead_letters)";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = conn
            .query_one(count, &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n >= TOTAL || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment for any late (zombie) commit to land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for child in [&mut a, &mut b, &mut c] {
        signal(child, "-TERM");
    }
    for child in [&mut a, &mut b, &mut c] {
        let _ = child.wait();
    }
    assert_eq!(
        landed(&conn).await,
        (TOTAL, TOTAL),
        "every message landed once"
    );
    let dead: i64 = conn
        .query_one("SELECT count(*) FROM bronze.orders__dead_letters", &[])
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(dead, TOTAL / 100);
    let nodes: BTreeSet<String> = conn
        .query(
            "SELECT DISTINCT json_get_str(metadata, 'tidepool.node') \
             FROM system.table_history('bronze.orders') WHERE operation = 'WRITE'",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    assert_eq!(
        nodes,
        ["node-a", "node-b", "node-c"].map(String::from).into(),
        "commits from every node"
    );
    // Static membership: the restarted member takes its partitions back without waiting
    // for its old session to expire and a rebalance. tansu 0.6 holds a static member's
    // JoinGroup and SyncGroup 3 s each (coordinator/group/administrator.rs, PAUSE_MS), so
    // the floor against it is about 6 s (measured 6.8 to 15.2 s here); the bound only
    // says the node resumes at all.
    assert!(
        resumed_after < 30_000,
        "node-b took {resumed_after} ms to commit after its restart"
    );
}
