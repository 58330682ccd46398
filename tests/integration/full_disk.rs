//! A full disk during a write: the client gets an error, nothing half-written is visible,
//! the server keeps serving and logs no backtrace. The lake sits on a 3 MiB tmpfs mounted
//! for the test (needs root, as CI and the dev machines run).

use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3M", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "mounting a tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("tidepool.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nroot = {:?}\n[postgres]\nlisten = \"127.0.0.1:{port}\"\n\
             [http]\nenabled = false\n[flight]\nenabled = false\n[admin]\ndisabled = true\n\
             [project]\ndir = {:?}\n",
            mnt.join("lake").display().to_string(),
            dir.path().display().to_string(),
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["serve", "--config", &config.display().to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tidepool serve starts");
    let conn = format!("host=127.0.0.1 port={port} user=x dbname=lake");
    let up = Instant::now();
    let client = loop {
        match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                break c;
            }
            Err(_) if up.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("server did not start: {e}"),
        }
    };
    client.batch_execute("CREATE SCHEMA s").await.unwrap();
    let err = client
        .batch_execute(
            "CREATE TABLE s.big AS SELECT value, md5(CAST(value AS VARCHAR)) AS h FROM generate_series(1, 2000000)",
        )
        .await
        .expect_err("the disk is too small");
    let db = err.as_db_error().expect("a server error");
    assert!(db.message().contains("No space left"), "{}", db.message());
    // Nothing half-written is visible, and the server keeps answering.
    let e = client
        .simple_query("SELECT count(*) FROM s.big")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE),
        "{e}"
    );
    client
        .batch_execute("CREATE TABLE s.small AS SELECT 1 AS a")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM s.small", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    // delta-rs aborts an upload that already failed to close; object_store panics on
    // that, delta-rs catches it: one log line at most per failed file, never a crash.
    for line in stderr.lines().filter(|l| l.contains("panicked")) {
        assert!(
            line.contains("Already shut down"),
            "an unexpected panic: {line}"
        );
    }
}
