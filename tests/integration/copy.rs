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

/// One row of every common type, as PostgreSQL 15.20 sends it
/// (`COPY (...) TO STDOUT (...) | xxd -p` with `timezone=UTC`).
const EVERY_TYPE: &str = "SELECT true AS b, 7::smallint AS i2, -42::int AS i4, 9000000000::bigint AS i8, 1.5::real AS f4, 2.25::double precision AS f8, 21168.23::numeric(15,2) AS n, -0.05::numeric(15,2) AS n2, 'h\"é,l|lo'::text AS t, E'tab\\there\\nnl\\\\bs' AS t2, ''::text AS e, DATE '2024-02-29' AS d, TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tz, '\\x4142'::bytea AS by, NULL::int AS nul";

/// (COPY options, PostgreSQL's bytes in hex).
const POSTGRESQL_COPY: [(&str, &str); 4] = [
    (
        "FORMAT binary",
        concat!(
            "5047434f50590aff0d0a0000000000000000000010000000010100000002000700000004ffffffd600000008",
            "0000000218711a00000000043fc000000000000840020000000000000000000e000300010000000200020490",
            "08fc0000000a0001ffff4000000201f4000000096822c3a92c6c7c6c6f0000000e74616209686572650a6e6c",
            "5c6273000000000000000400002279000000080002b0ec8517d580000000080002b0ec8515f3400000000241",
            "42ffffffffffff",
        ),
    ),
    (
        "FORMAT csv",
        concat!(
            "742c372c2d34322c393030303030303030302c312e352c322e32352c32313136382e32332c2d302e30352c22",
            "682222c3a92c6c7c6c6f222c2274616209686572650a6e6c5c6273222c22222c323032342d30322d32392c32",
            "3032342d30312d30322030333a30343a30352e3132333435362c323032342d30312d30322030333a30343a30",
            "352b30302c5c78343134322c0a",
        ),
    ),
    (
        "FORMAT text",
        concat!(
            "740937092d3432093930303030303030303009312e3509322e32350932313136382e3233092d302e30350968",
            "22c3a92c6c7c6c6f097461625c74686572655c6e6e6c5c5c62730909323032342d30322d323909323032342d",
            "30312d30322030333a30343a30352e31323334353609323032342d30312d30322030333a30343a30352b3030",
            "095c5c7834313432095c4e0a",
        ),
    ),
    (
        "FORMAT csv, FORCE_QUOTE *, DELIMITER '|'",
        concat!(
            "2274227c2237227c222d3432227c2239303030303030303030227c22312e35227c22322e3235227c22323131",
            "36382e3233227c222d302e3035227c22682222c3a92c6c7c6c6f227c2274616209686572650a6e6c5c627322",
            "7c22227c22323032342d30322d3239227c22323032342d30312d30322030333a30343a30352e313233343536",
            "227c22323032342d30312d30322030333a30343a30352b3030227c225c7834313432227c0a",
        ),
    ),
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_bytes_are_postgresqls_both_ways() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "SET timezone = 'UTC'; CREATE SCHEMA x; CREATE TABLE x.every AS {EVERY_TYPE} LIMIT 0"
        ))
        .await
        .unwrap();
    for (options, pg) in POSTGRESQL_COPY {
        // Out: the same bytes as PostgreSQL's.
        let out: Vec<Bytes> = client
            .copy_out(&format!("COPY ({EVERY_TYPE}) TO STDOUT ({options})"))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(hex(&out.concat()), pg, "COPY TO ({options})");
        // In: PostgreSQL's bytes read back into a table give the same bytes again.
        if options.contains("FORCE_QUOTE") {
            continue;
        }
        client.batch_execute("DELETE FROM x.every").await.unwrap();
        let sink = client
            .copy_in(&format!("COPY x.every FROM STDIN ({options})"))
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from(unhex(pg))).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1, "COPY FROM ({options})");
        let back: Vec<Bytes> = client
            .copy_out(&format!("COPY x.every TO STDOUT ({options})"))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(hex(&back.concat()), pg, "COPY FROM then TO ({options})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_copy_in_text_and_binary() {
    crate::common::run_python_as_user("copy_clients.py", &["psycopg3", "asyncpg"]).await;
}
