//! `[schedule]` on several nodes: the builds run on the holder of the lake's `schedule`
//! lease only; when the holder is killed (SIGKILL), another node takes the lease and runs
//! the next build, and two builds never run at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestServer;

fn node(config: &Path, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .arg("--config")
        .arg(config)
        .args(["--node-name", name, "--roles", "schedule", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tidepool starts")
}

/// The holder named in the newest version of the `schedule` lease.
fn holder(lake: &Path) -> Option<String> {
    let dir = lake.join("_tidepool/leases/schedule");
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()?;
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(newest).ok()?).ok()?;
    doc["holder"].as_str().map(str::to_string)
}

/// Scheduled runs recorded in the lake: (started, finished) in microseconds, in order.
async fn runs(c: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    c.query(
        "SELECT CAST(extract(epoch FROM started_at) * 1000000 AS BIGINT), \
                CAST(extract(epoch FROM finished_at) * 1000000 AS BIGINT) \
         FROM system.runs WHERE command LIKE 'schedule:%' ORDER BY started_at",
        &[],
    )
    .await
    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_builds_and_another_node_takes_over_when_it_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("sql/gold")).expect("project");
    std::fs::write(
        project.join("sql/gold/numbers.sql"),
        "SELECT value AS n FROM generate_series(1, 1000)",
    )
    .expect("model");
    let lake = dir.path().join("lake");
    let config = dir.path().join("tidepool.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nlease_secs = 3\n[lake]\nroot = {:?}\n[project]\ndir = {:?}\n\
             [schedule]\nevery_secs = 1\ncommand = \"run\"\n\
             [postgres]\nenabled = false\n[http]\nenabled = false\n[flight]\nenabled = false\n",
            lake.display().to_string(),
            project.display().to_string()
        ),
    )
    .expect("config");
    let mut a = node(&config, "node-a");
    let mut b = node(&config, "node-b");

    let reader = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        crate::common::settings(&lake, ""),
    )
    .await;
    let c = reader.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(&c).await.len() < 3 {
        assert!(Instant::now() < deadline, "no scheduled runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = holder(&lake).expect("a lease holder");
    let (killed, survivor) = if first == "node-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    // The survivor takes the lease once it expires (3 s, renewed every second) and runs
    // the next build a period (1 s) later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        if let Some(&(started, _)) = runs(&c).await.iter().find(|(s, _)| *s > killed_at) {
            break started - killed_at;
        }
        assert!(
            Instant::now() < deadline,
            "no build after the holder was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "the next build started {} ms after the holder was killed",
        resumed / 1000
    );
    assert_ne!(
        holder(&lake).as_deref(),
        Some(first.as_str()),
        "the lease moved"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = survivor.kill();
    let _ = survivor.wait();
    let all = runs(&c).await;
    assert!(all.len() >= 5, "{all:?}");
    for w in all.windows(2) {
        assert!(w[0].1 <= w[1].0, "two builds at once: {w:?}");
    }
    assert!(resumed < 15_000_000, "took {} ms", resumed / 1000);
}
