//! Several processes committing to one table on an object store: three `tidepool sql`
//! processes insert into one table at once on an S3 server whose conditional PUT is
//! atomic (moto answering one request at a time, tests/python/moto_serial.py); every
//! commit lands once, none is lost. A write through one server is read through another
//! at the next statement. The control (`--ignored`) runs the same race with conditional
//! PUT disabled (the server drops If-None-Match, so a create-only put overwrites) and
//! expects lost commits: it shows the race test can fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{TestServer, first, settings_with_root};

/// Inserts per writer.
const INSERTS: usize = 25;
const WRITERS: usize = 3;

struct S3 {
    child: Child,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn s3(conditional_put: bool) -> S3 {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "run `bash scripts/test.sh`, which installs moto[server] into .venv"
    );
    let port = crate::common::free_port();
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("tests/python/moto_serial.py"))
        .arg(port.to_string());
    if !conditional_put {
        cmd.arg("--no-conditional-put");
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let s3 = S3 {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
         aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='lake')",
        s3.endpoint
    );
    let ok = Command::new(&python)
        .args(["-c", &script])
        .status()
        .expect("python")
        .success();
    assert!(ok, "bucket created");
    s3
}

fn storage(endpoint: &str) -> String {
    format!(
        "[lake.storage_options]\naws_endpoint = \"{endpoint}\"\naws_allow_http = \"true\"\n\
         aws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\naws_region = \"us-east-1\"\n"
    )
}

fn config(dir: &Path, endpoint: &str) -> PathBuf {
    let path = dir.join("tidepool.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\nroot = \"s3://lake/race\"\n{}[project]\ndir = {:?}\n",
            storage(endpoint),
            dir.display().to_string()
        ),
    )
    .expect("config");
    path
}

fn sql(config: &Path, text: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .arg("--config")
        .arg(config)
        .args(["sql", text])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidepool sql starts")
}

/// Runs the race; returns (rows, distinct rows, commits after the table's creation other
/// than compactions). A lost commit shows as a missing row, a repeated one as a
/// duplicate row or an extra commit.
async fn race(endpoint: &str) -> (i64, i64, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), endpoint);
    let out = sql(&config, "CREATE TABLE public.t (w int, i int)")
        .wait_with_output()
        .expect("create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let writers: Vec<Child> = (0..WRITERS)
        .map(|w| {
            let text: String = (0..INSERTS)
                .map(|i| format!("INSERT INTO public.t VALUES ({w}, {i});"))
                .collect();
            sql(&config, &text)
        })
        .collect();
    for child in writers {
        let out = child.wait_with_output().expect("writer");
        assert!(
            out.status.success(),
            "a writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings_with_root("s3://lake/race", &storage(endpoint)),
    )
    .await;
    let c = server.connect().await;
    let number = |s: String| s.parse::<i64>().expect("a number");
    let rows = number(
        first(&c, "SELECT count(*) FROM public.t")
            .await
            .expect("count"),
    );
    let distinct = number(
        first(
            &c,
            "SELECT count(*) FROM (SELECT DISTINCT w, i FROM public.t)",
        )
        .await
        .expect("distinct"),
    );
    let commits = number(
        first(
            &c,
            "SELECT count(*) - 1 FROM system.table_history('public.t') WHERE operation <> 'OPTIMIZE'",
        )
        .await
        .expect("history"),
    );
    let ops = c
        .simple_query(
            "SELECT operation || ' ' || count(*) FROM system.table_history('public.t') GROUP BY operation",
        )
        .await
        .expect("operations");
    eprintln!("commits: {:?}", crate::common::rows_text(&ops));
    (rows, distinct, commits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_writers_on_s3_neither_lose_nor_repeat_a_commit() {
    let s3 = s3(true).await;
    let (rows, distinct, commits) = race(&s3.endpoint).await;
    let expected = (WRITERS * INSERTS) as i64;
    assert_eq!(
        (rows, distinct, commits),
        (expected, expected, expected),
        "rows, distinct rows, write commits"
    );

    // A write through one server is read through another at its next statement.
    let a = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings_with_root("s3://lake/race", &storage(&s3.endpoint)),
    )
    .await;
    let b = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings_with_root("s3://lake/race", &storage(&s3.endpoint)),
    )
    .await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    assert_eq!(
        first(&cb, "SELECT count(*) FROM public.t")
            .await
            .expect("b"),
        expected.to_string()
    );
    ca.batch_execute("INSERT INTO public.t VALUES (9, 9)")
        .await
        .expect("insert through a");
    assert_eq!(
        first(&cb, "SELECT count(*) FROM public.t WHERE w = 9")
            .await
            .expect("b reads"),
        "1"
    );
}

/// The control: without conditional PUT the same race loses commits (each writer was told
/// its insert committed). Run by hand:
/// `cargo test --test integration -- --ignored s3_commits::control`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "control run: shows the race test can fail"]
async fn control_without_conditional_put_loses_commits() {
    let s3 = s3(false).await;
    let (rows, distinct, commits) = race(&s3.endpoint).await;
    let expected = (WRITERS * INSERTS) as i64;
    eprintln!(
        "no conditional put: {rows} rows, {distinct} distinct, {commits} write commits of {expected}"
    );
    assert!(
        rows < expected,
        "no commit was lost without conditional put this time ({rows} of {expected})"
    );
}
