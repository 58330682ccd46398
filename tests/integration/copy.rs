//! COPY TO STDOUT and COPY FROM STDIN with real clients: psql's `\copy` both ways and
//! tokio-postgres' copy_in / copy_out (what rust-postgres and sqlx users call). A failed
//! COPY (bad row, CopyFail, a client that goes away) writes nothing.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};

use crate::common::{TestServer, first};

/// Runs psql with `commands` (one `-c` each) and returns (success, stdout + stderr).
async fn psql(server: &TestServer, commands: &[String]) -> (bool, String) {
    let (ok, out, err) = crate::common::psql_run(server.addr, commands).await;
    (ok, format!("{out}{err}"))
}

async fn count(client: &tokio_postgres::Client, table: &str) -> String {
    first(client, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_both_ways_and_failures_write_nothing() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SCHEMA c;
             CREATE TABLE c.t (id INT NOT NULL, name TEXT, amount DOUBLE PRECISION, day DATE, note TEXT DEFAULT 'none')",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "id,name,amount,day\n1,\"Smith, Ann\",1.5,2024-01-02\n2,,2.25,2024-02-03\n3,\"say \"\"hi\"\"\nthere\",,\n",
    )
    .unwrap();
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy c.t (id, name, amount, day) FROM '{}' WITH (FORMAT csv, HEADER)",
            csv.display()
        )],
    )
    .await;
    assert!(ok && out.contains("COPY 3"), "{out}");
    let rows = client
        .simple_query("SELECT id, name, amount, day, note FROM c.t ORDER BY id")
        .await
        .unwrap();
    let rows = crate::common::rows_text(&rows);
    assert_eq!(
        rows,
        [
            "1|Smith, Ann|1.5|2024-01-02|none",
            "2|NULL|2.25|2024-02-03|none",
            "3|say \"hi\"\nthere|NULL|NULL|none",
        ],
        "unquoted empty CSV fields are NULL; columns not listed take their DEFAULT"
    );

    // Out again: CSV with a header, text, and binary (psql writes what it receives).
    let out_csv = dir.path().join("out.csv");
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy (SELECT id, name, amount FROM c.t ORDER BY id) TO '{}' WITH (FORMAT csv, HEADER)",
            out_csv.display()
        )],
    )
    .await;
    assert!(ok && out.contains("COPY 3"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&out_csv).unwrap(),
        "id,name,amount\n1,\"Smith, Ann\",1.5\n2,,2.25\n3,\"say \"\"hi\"\"\nthere\",\n"
    );
    let out_text = dir.path().join("out.txt");
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy (SELECT id, name FROM c.t ORDER BY id) TO '{}'",
            out_text.display()
        )],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&out_text).unwrap(),
        "1\tSmith, Ann\n2\t\\N\n3\tsay \"hi\"\\nthere\n"
    );
    // The text file read back in: same rows.
    let (ok, out) = psql(
        &server,
        &[
            "CREATE TABLE c.back (id INT, name TEXT)".to_string(),
            format!("\\copy c.back FROM '{}'", out_text.display()),
        ],
    )
    .await;
    assert!(ok && out.contains("COPY 3"), "{out}");
    assert_eq!(
        first(
            &client,
            "SELECT string_agg(coalesce(name, '<null>'), '|' ORDER BY id) FROM c.back"
        )
        .await
        .unwrap(),
        "Smith, Ann|<null>|say \"hi\"\nthere"
    );

    // A bad value names its line and column; nothing of the COPY is written.
    std::fs::write(&csv, "10,a\n11,b\n12x,c\n").unwrap();
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy c.t (id, name) FROM '{}' WITH (FORMAT csv)",
            csv.display()
        )],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("invalid input syntax for type integer: \"12x\"")
            && out.contains("line 3, column id"),
        "{out}"
    );
    assert_eq!(count(&client, "c.t").await, "3");
    // Too few columns, a NOT NULL column left NULL: refused, nothing written.
    std::fs::write(&csv, "20,a\n21\n").unwrap();
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy c.t (id, name) FROM '{}' (FORMAT csv)",
            csv.display()
        )],
    )
    .await;
    assert!(
        !ok && out.contains("missing data for column \"name\""),
        "{out}"
    );
    std::fs::write(&csv, "a\n").unwrap();
    let (ok, out) = psql(
        &server,
        &[format!(
            "\\copy c.t (name) FROM '{}' (FORMAT csv)",
            csv.display()
        )],
    )
    .await;
    assert!(!ok && out.to_lowercase().contains("null"), "{out}");
    assert_eq!(count(&client, "c.t").await, "3");

    // Inside a transaction: visible to the block, gone with ROLLBACK.
    std::fs::write(&csv, "30,x\n31,y\n").unwrap();
    let (ok, out) = psql(
        &server,
        &[
            "BEGIN".to_string(),
            format!(
                "\\copy c.t (id, name) FROM '{}' (FORMAT csv)",
                csv.display()
            ),
            "SELECT count(*) AS in_block FROM c.t".to_string(),
            "ROLLBACK".to_string(),
        ],
    )
    .await;
    assert!(ok && out.contains("COPY 2"), "{out}");
    assert!(
        out.contains("\n        5\n"),
        "the block sees its COPY:\n{out}"
    );
    assert_eq!(count(&client, "c.t").await, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_copy_in_and_out_and_copy_fail() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE SCHEMA d; CREATE TABLE d.t (id BIGINT, v TEXT)")
        .await
        .unwrap();

    // Many rows, in chunks cut mid-row, through tokio-postgres' copy_in.
    let sink = client
        .copy_in("COPY d.t FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..50_000 {
        data.push_str(&format!("{i},\"row {i}\"\n"));
    }
    for chunk in data.as_bytes().chunks(7_777) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let rows = sink.finish().await.unwrap();
    assert_eq!(rows, 50_000);
    assert_eq!(count(&client, "d.t").await, "50000");

    // Out through copy_out, text format: one row per CopyData message, as PostgreSQL.
    let stream = client
        .copy_out("COPY (SELECT id, v FROM d.t WHERE id < 3 ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(
        chunks,
        [
            Bytes::from("0\trow 0\n"),
            Bytes::from("1\trow 1\n"),
            Bytes::from("2\trow 2\n")
        ]
    );
    // Binary: PostgreSQL's signature with the first row, rows of (count, length, value),
    // the trailer.
    let stream = client
        .copy_out("COPY (SELECT id FROM d.t WHERE id = 7) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let messages: Vec<Bytes> = stream.try_collect().await.unwrap();
    let mut leading = b"PGCOPY\n\xff\r\n\0".to_vec();
    leading.extend([0, 0, 0, 0, 0, 0, 0, 0]);
    leading.extend([0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(
        messages,
        [Bytes::from(leading), Bytes::from_static(&[0xff, 0xff])]
    );

    // A sink dropped without finish sends CopyFail: the COPY writes nothing.
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY d.t FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\tkept?\n")).await.unwrap();
    }
    assert_eq!(count(&client, "d.t").await, "50000");
    // The connection is usable afterwards.
    assert_eq!(first(&client, "SELECT 1").await.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_copy_in_text_and_binary() {
    crate::common::run_python_as_user("copy_clients.py", &["psycopg3", "asyncpg"]).await;
}
