//! Distributed queries on Apache DataFusion Ballista, all real processes on loopback:
//! `tidepool scheduler`, two `tidepool executor`s and `tidepool serve` with
//! `[cluster] scheduler`. TPC-H's 22 queries give the same rows on the cluster as on the
//! server alone, EXPLAIN shows the stages, and an executor killed mid-query leaves the
//! server answering (tests/python/cluster_tpch.py drives the queries).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ServeProcess, run_python};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tidepool(lake: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidepool"));
    c.arg("--lake").arg(lake).args(args);
    c
}

/// Starts a scheduler on a free port; its address (`df://...`) is the first line it
/// prints.
fn scheduler(lake: &Path) -> (Killed, String) {
    let mut child = tidepool(lake, &["scheduler", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tidepool scheduler starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the scheduler prints its address");
    let address = line.trim().to_string();
    assert!(address.starts_with("df://127.0.0.1:"), "{address:?}");
    (Killed(child), address)
}

fn executor(lake: &Path, scheduler: &str) -> Killed {
    Killed(
        tidepool(
            lake,
            &["executor", "--scheduler", scheduler, "--slots", "2"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tidepool executor starts"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_on_a_scheduler_and_two_executors_equals_one_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let (_scheduler, address) = scheduler(&lake);
    let first = executor(&lake, &address);
    let second = executor(&lake, &address);
    let server = ServeProcess::start(&format!("[cluster]\nscheduler = \"{address}\"\n")).await;
    // Give the executors time to register (they beat every 2 s).
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    let data = dir.path().join("tpch");
    std::fs::create_dir_all(&data).expect("data dir");
    run_python(
        "cluster_tpch.py",
        &[
            server.pg.ip().to_string(),
            server.pg.port().to_string(),
            data.display().to_string(),
            "0.01".to_string(),
            first.0.id().to_string(),
            second.0.id().to_string(),
        ],
        &["cluster"],
    )
    .await;
    server.stop_clean("cluster").await;
}

/// The compose cluster profile's settings (tidepool.cluster.toml) are valid and send
/// queries to the profile's scheduler, with the sources of tidepool.docker.toml.
#[test]
fn the_compose_cluster_settings_resolve() {
    use tidepool::config::{Config, Overrides};
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let resolve = |file: &str| {
        let text = std::fs::read_to_string(repo.join(file))
            .expect("reads")
            .replace(
                "password_env = \"TIDEPOOL_ANALYST_PASSWORD\"",
                "password = \"a\"",
            )
            .replace(
                "password_env = \"TIDEPOOL_POWERBI_PASSWORD\"",
                "password = \"p\"",
            );
        Config::parse(&text, &repo.join(file))
            .expect("parses")
            .resolve(&Overrides::default())
            .expect("is valid")
    };
    let cluster = resolve("tidepool.cluster.toml");
    let single = resolve("tidepool.docker.toml");
    assert_eq!(
        cluster.cluster_scheduler.as_deref(),
        Some("df://scheduler:50050")
    );
    assert_eq!(single.cluster_scheduler, None);
    let sources = |s: &tidepool::config::Settings| -> Vec<String> {
        s.sources
            .iter()
            .map(|x| format!("{}:{:?}", x.name, x.topics))
            .collect()
    };
    assert_eq!(sources(&cluster), sources(&single));
    assert_eq!(cluster.lake.root, single.lake.root);
}
