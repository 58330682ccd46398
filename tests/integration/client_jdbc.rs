//! The real pgjdbc driver (Debian's libpostgresql-jdbc-java, Java 17, installed by
//! scripts/test.sh) end to end: tests/java/JdbcProbe.java, compiled with javac and run
//! against the server. Batch INSERT counts, generated keys through RETURNING,
//! transactions with autocommit off (commit, rollback, savepoints, 25P02 after an error)
//! and key metadata.

use crate::common::TestServer;

const DRIVER: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_batches_keys_and_transactions() {
    assert!(
        std::path::Path::new(DRIVER).exists(),
        "pgjdbc is missing: run `bash scripts/test.sh`, which installs libpostgresql-jdbc-java"
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JdbcProbe.java");
    let classes = tempfile::tempdir().expect("tempdir");
    let javac = tokio::process::Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .args(["-cp", DRIVER])
        .arg(&source)
        .output()
        .await
        .expect("javac runs (the test script installs openjdk-17-jdk-headless)");
    assert!(
        javac.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let server = TestServer::start("[[users]]\nname = \"dev\"\npassword = \"d3v pw\"\n").await;
    let out = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{DRIVER}:{}", classes.path().display()))
        .arg("JdbcProbe")
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .arg("dev")
        .arg("d3v pw")
        .output()
        .await
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pgjdbc: ok"),
        "pgjdbc failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
