//! node-postgres (npm `pg`, installed into tests/node by scripts/test.sh) end to end:
//! tests/node/pg_client.mjs.

use crate::client_npgsql::sample_lake;
use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_end_to_end() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/pg").exists(),
        "node-postgres is missing: run `bash scripts/test.sh`, which runs npm install in tests/node"
    );
    let server =
        TestServer::start("[[users]]\nname = \"analyst\"\npassword = \"an4lyst pw\"\n").await;
    let client = crate::common::connect(&format!(
        "{} password='an4lyst pw'",
        server.conn_str("analyst")
    ))
    .await;
    sample_lake(&client).await;
    let out = tokio::process::Command::new("node")
        .arg(dir.join("pg_client.mjs"))
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .arg("analyst")
        .arg("an4lyst pw")
        .output()
        .await
        .expect("node runs (the test script installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("node-postgres: ok"),
        "node-postgres failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
