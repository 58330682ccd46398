//! A lake on S3: moto's S3 server (installed into .venv by scripts/test.sh) stands in for
//! the real service; tidepool talks to it with the same object_store code as to AWS.

use std::process::{Child, Command, Stdio};

use crate::common::TestServer;

pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_bin(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs moto[server] into .venv",
        path.display()
    );
    path
}

pub(crate) async fn start_moto(bucket: &str) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(venv_bin("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, endpoint };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
         aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{bucket}')",
        moto.endpoint
    );
    let status = Command::new(venv_bin("python"))
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "bucket created");
    moto
}

fn s3_config(endpoint: &str) -> String {
    format!(
        "[lake.storage_options]\naws_endpoint = \"{endpoint}\"\naws_allow_http = \"true\"\n\
         aws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\naws_region = \"us-east-1\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_on_s3() {
    let moto = start_moto("lake").await;
    let config = s3_config(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::common::settings_with_root("s3://lake/warehouse", &config);
    let server = TestServer::start_with(dir, settings).await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SCHEMA gold; \
             CREATE TABLE gold.orders AS SELECT * FROM (VALUES (1, 10.0), (2, 20.0)) v(id, amount); \
             INSERT INTO gold.orders VALUES (3, 30.0); \
             CREATE VIEW gold.big AS SELECT id FROM gold.orders WHERE amount > 15; \
             COPY (SELECT * FROM gold.orders) TO 's3://lake/exports/orders.parquet'",
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT count(*), sum(amount) FROM gold.orders", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, f64>(1), 60.0);
    let row = client
        .query_one("SELECT count(*) FROM gold.orders VERSION AS OF 0", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    let row = client
        .query_one("SELECT count(*) FROM gold.big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    let row = client
        .query_one(
            "SELECT max(id) FROM read_parquet('s3://lake/exports/orders.parquet')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    let rows = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gold' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["big", "orders"]);

    // A second server over the same bucket (another process) sees the same lake.
    let other = TestServer::start_with(
        tempfile::tempdir().unwrap(),
        crate::common::settings_with_root("s3://lake/warehouse", &config),
    )
    .await;
    let row = other
        .connect()
        .await
        .query_one("SELECT count(*) FROM gold.orders", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
}
