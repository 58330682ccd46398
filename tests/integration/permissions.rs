//! Permissions as an attacker holding a reader account tries them: a table of statement
//! shapes over Postgres and Flight SQL, each allowed or refused with 42501; random
//! statements checked for non-interference (a reader's answers never change when a schema
//! it may not read changes); file and URL grants for full users; TLS-only Postgres; HTTP
//! ingest and metrics credentials; malformed SCRAM messages.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::error::SqlState;
use tonic::Code;

use crate::common::{TestServer, connect};
use crate::flight::{Client, status_of};

const USERS: &str = "[flight]\nlisten = \"127.0.0.1:0\"\n\
    [[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
    [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n";

/// gold is the reader's; silver holds what it must never see (ids >= 7000, 'SECRET').
const SETUP: &str = "CREATE SCHEMA gold; CREATE SCHEMA silver;
CREATE TABLE gold.t AS SELECT * FROM (VALUES (1, 'pub'), (2, 'pub'), (3, 'pub')) AS x(id, v);
CREATE TABLE silver.secret AS SELECT * FROM (VALUES (7001, 'SECRET'), (7002, 'SECRET')) AS x(id, v);
CREATE VIEW gold.v_secret AS SELECT id FROM silver.secret;
CREATE VIEW gold.v_pub AS SELECT id FROM gold.t";

/// Procedures, one statement each (a body runs to the end of its text).
const PROCEDURES: &[&str] = &[
    "CREATE PROCEDURE gold.p(x BIGINT) AS SELECT id FROM silver.secret WHERE id > :x ORDER BY id",
    "CREATE PROCEDURE silver.sp() AS SELECT id FROM silver.secret",
];

async fn setup(admin: &tokio_postgres::Client) {
    admin.batch_execute(SETUP).await.unwrap();
    for p in PROCEDURES {
        admin.batch_execute(p).await.unwrap();
    }
}

/// The first column of the first row of a simple query's answer.
fn first(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

async fn pg(server: &TestServer, user: &str, password: &str) -> tokio_postgres::Client {
    connect(&format!("{} password='{password}'", server.conn_str(user))).await
}

async fn flight(server: &TestServer, user: &str, password: &str) -> Client {
    crate::flight::connect(server, Some((user, password)))
        .await
        .expect("flight login")
}

/// Runs `sql` over Flight SQL, reading every endpoint.
async fn flight_run(c: &mut Client, sql: &str) -> Result<usize, tonic::Status> {
    let info = c.execute(sql.to_string(), None).await.map_err(status_of)?;
    let mut rows = 0;
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("ticket");
        let stream = c.do_get(ticket).await.map_err(status_of)?;
        use futures::TryStreamExt;
        let batches: Vec<_> = stream.try_collect().await.map_err(status_of)?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(rows)
}

/// A statement shape: statements run first (must succeed), the statement under test, and
/// whether a reader of `gold` may run it.
struct Shape {
    before: &'static str,
    sql: String,
    allowed: bool,
}

fn shapes(outside_csv: &str, lake: &str) -> Vec<Shape> {
    let ok = |sql: &str| Shape {
        before: "",
        sql: sql.to_string(),
        allowed: true,
    };
    let no = |sql: &str| Shape {
        before: "",
        sql: sql.to_string(),
        allowed: false,
    };
    let in_silver = |sql: &str, allowed: bool| Shape {
        before: "SET search_path = silver",
        sql: sql.to_string(),
        allowed,
    };
    vec![
        ok("SELECT * FROM gold.t"),
        ok("SELECT count(*) FROM gold.t WHERE id IN (SELECT id FROM gold.t)"),
        ok("WITH a AS (SELECT * FROM gold.t) SELECT * FROM a"),
        ok("SELECT * FROM gold.v_secret"),
        ok("SELECT * FROM gold.p(0)"),
        ok("CALL gold.p(0)"),
        ok("SELECT * FROM gold.t VERSION AS OF 0"),
        ok("SELECT * FROM read_delta('gold.t')"),
        ok("SELECT * FROM table_history('gold.t')"),
        ok("SELECT relname FROM pg_catalog.pg_class LIMIT 1"),
        ok("SELECT table_name FROM information_schema.tables LIMIT 1"),
        ok("SELECT * FROM generate_series(1, 3)"),
        ok("EXPLAIN SELECT * FROM gold.t"),
        ok("(SELECT * FROM gold.t)"),
        ok("SELECT (SELECT max(id) FROM gold.t)"),
        ok("CREATE TEMP TABLE tt AS SELECT * FROM gold.t"),
        in_silver("WITH secret AS (SELECT 0 AS id) SELECT * FROM secret", true),
        // The reader's own files of the lake read as their table.
        ok(&format!("SELECT * FROM read_delta('{lake}/gold/t')")),
        no("SELECT * FROM silver.secret"),
        no("SELECT * FROM lake.silver.secret"),
        no("SELECT * FROM \"silver\".\"secret\""),
        no("SELECT x.* FROM gold.t t, LATERAL read_delta('silver.secret') x"),
        no("SELECT * FROM read_delta('silver.secret')"),
        no(&format!(
            "SELECT x.* FROM gold.t t, LATERAL read_csv('{outside_csv}') x"
        )),
        no(&format!("SELECT * FROM read_csv('{outside_csv}')")),
        no("SELECT * FROM read_csv('/etc/hostname')"),
        no("SELECT x.* FROM gold.t t, LATERAL table_history('silver.secret') x"),
        no("SELECT * FROM table_history('silver.secret')"),
        no("EXPLAIN ANALYZE INSERT INTO silver.secret VALUES (666, 'w')"),
        no("EXPLAIN INSERT INTO silver.secret VALUES (666, 'w')"),
        no("EXPLAIN SELECT * FROM silver.secret"),
        in_silver(
            "WITH a AS (SELECT * FROM secret), secret AS (SELECT 0 AS id) SELECT * FROM a",
            false,
        ),
        in_silver(
            "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret",
            false,
        ),
        in_silver(
            "SELECT (WITH a AS (SELECT id FROM secret) SELECT max(id) FROM a)",
            false,
        ),
        in_silver(
            "SELECT * FROM (SELECT id FROM secret) d, (WITH secret AS (SELECT 1 AS id) SELECT * FROM secret) e",
            false,
        ),
        no("(SELECT * INTO silver.pwn FROM gold.t)"),
        no("SELECT * INTO gold.pwn FROM gold.t"),
        no("CREATE TABLE gold.x AS SELECT 1 AS y"),
        no("INSERT INTO gold.t VALUES (3, 'w')"),
        no("CREATE TEMP TABLE tt2 AS SELECT * FROM silver.secret"),
        no("SELECT * FROM gold.t WHERE id IN (SELECT id FROM silver.secret)"),
        no("SELECT * FROM gold.t WHERE EXISTS (SELECT 1 FROM silver.secret)"),
        no("SELECT (SELECT max(id) FROM silver.secret)"),
        no("SELECT * FROM gold.t UNION SELECT * FROM silver.secret"),
        no("SELECT * FROM gold.t EXCEPT SELECT * FROM silver.secret"),
        no("SELECT * FROM gold.t JOIN silver.secret USING (id)"),
        no(
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT min(id) FROM silver.secret)) SELECT count(*) FROM r",
        ),
        no("COPY (SELECT * FROM gold.t) TO '/tmp/tidepool-reader-copy.csv'"),
        no("COPY silver.secret TO '/tmp/tidepool-reader-copy2.csv'"),
        no(&format!(
            "CREATE EXTERNAL TABLE gold.ext STORED AS CSV LOCATION '{outside_csv}'"
        )),
        no("CREATE VIEW gold.v2 AS SELECT 1 AS x"),
        no("DROP TABLE gold.t"),
        no("CREATE SCHEMA pwn"),
        no("SELECT * FROM system.runs"),
        no("SELECT * FROM silver.secret VERSION AS OF 0"),
        no("CALL silver.sp()"),
        no("SELECT * FROM silver.sp()"),
        no("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM silver.secret"),
        no(&format!("SELECT * FROM read_delta('{lake}/silver/secret')")),
        no(&format!(
            "SELECT * FROM read_parquet('{lake}/silver/secret/')"
        )),
        no("SELECT * FROM read_json('s3://elsewhere/x.json')"),
        no("DELETE FROM gold.t WHERE id = 1"),
        no("UPDATE gold.t SET v = 'w'"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_statement_shapes_over_postgres_and_flight() {
    let server = TestServer::start(USERS).await;
    let files = tempfile::tempdir().unwrap();
    let outside = files.path().join("outside.csv");
    std::fs::write(&outside, "id,v\n9001,SECRET\n").unwrap();
    let admin = pg(&server, "admin", "admin pw").await;
    setup(&admin).await;
    let lake = server.lake.path().display().to_string();
    let shapes = shapes(&outside.display().to_string(), &lake);
    assert!(shapes.len() >= 40, "{} shapes", shapes.len());

    let reader = pg(&server, "bi", "bi pw").await;
    let mut flight_reader = flight(&server, "bi", "bi pw").await;
    let mut failures = Vec::new();
    for s in &shapes {
        // Postgres
        reader.batch_execute("RESET search_path").await.unwrap();
        if !s.before.is_empty() {
            reader.batch_execute(s.before).await.unwrap();
        }
        let got = reader.simple_query(&s.sql).await;
        match (&got, s.allowed) {
            (Ok(_), true) => {}
            (Err(e), false) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {}
            (other, _) => failures.push(format!(
                "postgres: {} -> {:?} (allowed: {})",
                s.sql,
                other.as_ref().map(|_| "ok").map_err(|e| e.to_string()),
                s.allowed
            )),
        }
        // Flight SQL
        flight_run(&mut flight_reader, "RESET search_path")
            .await
            .unwrap();
        if !s.before.is_empty() {
            flight_run(&mut flight_reader, s.before).await.unwrap();
        }
        let sql = s.sql.replace("tt AS", "tt_f AS");
        let got = flight_run(&mut flight_reader, &sql).await;
        match (&got, s.allowed) {
            (Ok(_), true) => {}
            (Err(e), false) if e.code() == Code::PermissionDenied => {}
            (other, _) => failures.push(format!(
                "flight: {} -> {:?} (allowed: {})",
                s.sql,
                other
                    .as_ref()
                    .map(|_| "ok")
                    .map_err(|e| e.message().to_string()),
                s.allowed
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing was written or created by the refused statements.
    let n = admin
        .query_one("SELECT count(*) FROM silver.secret", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, i64>(0), 2);
    let n = admin
        .query_one("SELECT count(*) FROM gold.t", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, i64>(0), 3);
    for name in ["silver.pwn", "gold.pwn", "gold.x", "gold.v2", "gold.ext"] {
        let e = admin
            .simple_query(&format!("SELECT * FROM {name}"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{name}: {e}");
    }
    assert!(!std::path::Path::new("/tmp/tidepool-reader-copy.csv").exists());
}

/// A random statement over tables of both schemas, CTEs that shadow table names,
/// subqueries in every clause, LATERAL and set operations; every relation has an `id`.
fn statement(rng: &mut StdRng, depth: u32) -> String {
    let rel = |rng: &mut StdRng, depth: u32| -> String {
        match rng.random_range(0..if depth > 0 { 9 } else { 7 }) {
            0 => "gold.t".into(),
            1 => "silver.secret".into(),
            2 => "t".into(),
            3 => "secret".into(),
            // (gold.v_secret would declassify silver by design: a definer view.)
            4 => "gold.v_pub".into(),
            5 => "read_delta('gold.t')".into(),
            6 => "read_delta('silver.secret')".into(),
            _ => format!("({})", statement(rng, depth - 1)),
        }
    };
    let mut from = format!("{} r0", rel(rng, depth));
    match rng.random_range(0..4) {
        0 => from.push_str(&format!(" JOIN {} r1 ON r0.id = r1.id", rel(rng, depth))),
        1 if depth > 0 => from.push_str(&format!(
            ", LATERAL (SELECT id FROM {} WHERE id <> r0.id) r1",
            rel(rng, depth - 1)
        )),
        _ => {}
    }
    let mut q = format!("SELECT r0.id FROM {from}");
    if depth > 0 {
        match rng.random_range(0..5) {
            0 => q.push_str(&format!(" WHERE r0.id IN ({})", statement(rng, depth - 1))),
            1 => q.push_str(&format!(
                " WHERE EXISTS ({}) OR r0.id < 0",
                statement(rng, depth - 1)
            )),
            2 => q.push_str(&format!(
                " WHERE r0.id <= (SELECT max(id) FROM {})",
                rel(rng, depth - 1)
            )),
            _ => {}
        }
    }
    match rng.random_range(0..6) {
        0 if depth > 0 => format!("{q} UNION ALL {}", statement(rng, depth - 1)),
        1 if depth > 0 => {
            // CTEs named like tables, defined from whatever is in scope.
            let name = ["secret", "t", "a"][rng.random_range(0..3)];
            format!(
                "WITH {name} AS ({}) SELECT id FROM {name} WHERE id IN ({q})",
                statement(rng, depth - 1)
            )
        }
        _ => q,
    }
}

/// Runs each statement as the reader; the rows of those it may run, sorted.
async fn answers(
    reader: &tokio_postgres::Client,
    statements: &[(bool, String)],
) -> Vec<Option<Vec<String>>> {
    let mut out = Vec::new();
    for (silver_first, sql) in statements {
        let path = if *silver_first {
            "silver, gold"
        } else {
            "gold, silver"
        };
        reader
            .batch_execute(&format!("SET search_path = {path}"))
            .await
            .unwrap();
        match reader.simple_query(sql).await {
            Ok(msgs) => {
                let mut rows: Vec<String> = msgs
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).unwrap_or("NULL").to_string())
                        }
                        _ => None,
                    })
                    .collect();
                rows.sort();
                out.push(Some(rows));
            }
            Err(_) => out.push(None),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_statements_never_let_a_reader_see_other_schemas() {
    let server = TestServer::start(USERS).await;
    let admin = pg(&server, "admin", "admin pw").await;
    setup(&admin).await;
    let reader = pg(&server, "bi", "bi pw").await;
    let seed: u64 = std::env::var("TIDEPOOL_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_203);
    let mut rng = StdRng::seed_from_u64(seed);
    let statements: Vec<(bool, String)> = (0..300)
        .map(|_| (rng.random_bool(0.5), statement(&mut rng, 2)))
        .collect();
    let before = answers(&reader, &statements).await;
    // What the reader may not read changes completely; what it may read stays.
    admin
        .batch_execute(
            "CREATE OR REPLACE TABLE silver.secret AS SELECT * FROM (VALUES (1, 'SECRET'), (2, 'S'), (3, 'S'), (8000, 'S')) AS x(id, v)",
        )
        .await
        .unwrap();
    let after = answers(&reader, &statements).await;
    let mut answered = 0;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            b, a,
            "seed {seed}: the reader's answer to statement {i} changed with silver.secret: {}",
            statements[i].1
        );
        if let Some(rows) = b {
            answered += 1;
            assert!(
                rows.iter()
                    .all(|r| r.parse::<i64>().is_ok_and(|v| v < 7000)),
                "{}: {rows:?}",
                statements[i].1
            );
        }
    }
    // The grammar is not degenerate: both outcomes happen.
    assert!(answered > 20, "only {answered} of 300 statements ran");
    assert!(answered < 280, "{answered} of 300 statements ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_urls_need_a_grant() {
    let files = tempfile::tempdir().unwrap();
    let landing = files.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("in.csv"), "a,b\n1,x\n2,y\n").unwrap();
    std::fs::write(files.path().join("outside.csv"), "a\n1\n").unwrap();
    let toml = format!(
        "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
         [[users]]\nname = \"eng\"\npassword = \"eng pw\"\nfiles = [\"{}/\"]\n",
        landing.display()
    );
    let server = TestServer::start(&toml).await;
    let lake = server.lake.path().display().to_string();
    let admin = pg(&server, "admin", "admin pw").await;
    let eng = pg(&server, "eng", "eng pw").await;
    let denied = |r: Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>,
                  what: &str| {
        let e = r.expect_err(what);
        assert_eq!(
            e.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{what}: {e}"
        );
    };
    // A full user without a grant: no host files, no URLs.
    denied(
        admin
            .simple_query("SELECT * FROM read_csv('/etc/hostname')")
            .await,
        "read_csv /etc",
    );
    denied(
        admin.simple_query("COPY (SELECT 1 AS a) TO '/tmp/x'").await,
        "copy to /tmp",
    );
    denied(
        admin
            .simple_query("SELECT * FROM read_parquet('s3://elsewhere/x.parquet')")
            .await,
        "s3 url",
    );
    denied(
        admin
            .simple_query("SELECT * FROM read_delta('s3://elsewhere/t')")
            .await,
        "read_delta s3",
    );
    // With a grant: under the prefix only.
    let inside = landing.join("in.csv").display().to_string();
    let rows = eng
        .simple_query(&format!("SELECT count(*) FROM read_csv('{inside}')"))
        .await
        .unwrap();
    assert_eq!(first(&rows).as_deref(), Some("2"));
    let out = landing.join("out.csv").display().to_string();
    eng.simple_query(&format!("COPY (SELECT 1 AS a) TO '{out}'"))
        .await
        .unwrap();
    assert!(std::path::Path::new(&out).exists());
    denied(
        eng.simple_query(&format!(
            "SELECT * FROM read_csv('{}/../outside.csv')",
            landing.display()
        ))
        .await,
        "dot-dot escape",
    );
    denied(
        eng.simple_query("SELECT * FROM read_csv('/etc/hostname')")
            .await,
        "outside the prefix",
    );
    // Nobody writes into the lake's folders as files.
    admin
        .batch_execute("CREATE SCHEMA gold; CREATE TABLE gold.t AS SELECT 1 AS a")
        .await
        .unwrap();
    denied(
        admin
            .simple_query(&format!(
                "COPY (SELECT 1 AS a) TO '{lake}/gold/t/_delta_log/x.json'"
            ))
            .await,
        "copy into _delta_log",
    );
    denied(
        admin
            .simple_query(&format!("COPY (SELECT 1 AS a) TO '{lake}/_tidepool/x.csv'"))
            .await,
        "copy into _tidepool",
    );
    // The lake's tables read as tables by their files.
    let rows = admin
        .simple_query(&format!("SELECT count(*) FROM read_delta('{lake}/gold/t')"))
        .await
        .unwrap();
    assert_eq!(first(&rows).as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedures_run_with_their_owners_rights() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("in.csv"), "a\n5\n").unwrap();
    let toml = format!(
        "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
         [[users]]\nname = \"eng\"\npassword = \"eng pw\"\nfiles = [\"{}/\"]\n\n\
         [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n",
        files.path().display()
    );
    let server = TestServer::start(&toml).await;
    let admin = pg(&server, "admin", "admin pw").await;
    let eng = pg(&server, "eng", "eng pw").await;
    let bi = pg(&server, "bi", "bi pw").await;
    admin.batch_execute("CREATE SCHEMA gold").await.unwrap();
    let csv = files.path().join("in.csv").display().to_string();
    // admin holds no file grant: a multi-statement body cannot smuggle a read past it.
    admin
        .batch_execute(&format!(
            "CREATE PROCEDURE gold.sneaky() AS SELECT 1 AS a; SELECT * FROM read_csv('{csv}')"
        ))
        .await
        .unwrap();
    let e = bi.simple_query("CALL gold.sneaky()").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    // eng holds the grant: its procedure reads the file for a reader who holds none.
    eng.batch_execute(&format!(
        "CREATE PROCEDURE gold.landed() AS SELECT 1 AS a; SELECT a FROM read_csv('{csv}')"
    ))
    .await
    .unwrap();
    let rows = bi.simple_query("CALL gold.landed()").await.unwrap();
    assert_eq!(first(&rows).as_deref(), Some("5"));
    let e = bi
        .simple_query(&format!("SELECT * FROM read_csv('{csv}')"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_means_tls_on_the_postgres_port() {
    let dir = tempfile::tempdir().unwrap();
    let (_cert, tls) = crate::common::self_signed_tls(dir.path());
    let server = TestServer::start(&format!(
        "{tls}\n[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n"
    ))
    .await;
    let conn = format!(
        "{} password='admin pw' sslmode=disable",
        server.conn_str("admin")
    );
    let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("plaintext refused");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    assert!(db.message().contains("requires TLS"), "{}", db.message());

    // A documented setting lets loopback clients in without TLS.
    let server = TestServer::start(&format!(
        "{}\nplaintext_on_loopback = true\n[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n",
        tls.trim_end()
    ))
    .await;
    let c = pg(&server, "admin", "admin pw").await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_are_errors_naming_the_user_not_panics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(USERS).await;
    // A wrong password names the user who tried.
    let err = tokio_postgres::connect(
        &format!("{} password='wrong'", server.conn_str("admin")),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("refused");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD);
    assert!(db.message().contains("\"admin\""), "{}", db.message());

    // A cleartext PasswordMessage where SCRAM was asked, many times: an 08P01 each time.
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut startup = Vec::new();
        startup.extend_from_slice(&196608i32.to_be_bytes());
        for kv in ["user", "admin", "database", "lake"] {
            startup.extend_from_slice(kv.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut msg = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&startup);
        s.write_all(&msg).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(buf[0], b'R', "{:?}", &buf[..n]);
        let password = b"admin pw\0";
        let mut p = vec![b'p'];
        p.extend_from_slice(&((password.len() + 4) as i32).to_be_bytes());
        p.extend_from_slice(password);
        s.write_all(&p).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
        assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("08P01"), "{text}");
    }
    // The server is fine.
    let c = pg(&server, "admin", "admin pw").await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_credentials_and_size_before_the_body() {
    let server = TestServer::start(&format!(
        "{USERS}\n[http]\nlisten = \"127.0.0.1:0\"\nmax_body = \"1KiB\"\n"
    ))
    .await;
    let http = server.http.expect("http");
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/ingest/events");
    // A reader may not write bronze.
    let r = client
        .post(&url)
        .basic_auth("bi", Some("bi pw"))
        .body("{\"a\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // No credentials: 401 before any body is read, however large it claims to be.
    let r = client.post(&url).body("{\"a\": 1}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A declared length over max_body: 413 at once, without waiting for the bytes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("admin:admin pw")
    };
    s.write_all(
        format!(
            "POST /v1/ingest/events HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 1073741824\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered at once")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // /metrics: full users only.
    let r = client
        .get(format!("http://{http}/metrics"))
        .basic_auth("bi", Some("bi pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .get(format!("http://{http}/metrics"))
        .basic_auth("admin", Some("admin pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

const TENANTS: &str = "[flight]\nlisten = \"127.0.0.1:0\"\n\
    [[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
    [[users]]\nname = \"acme\"\npassword = \"acme pw\"\nschemas = [\"gold\"]\n\n\
    [[users]]\nname = \"globex\"\npassword = \"globex pw\"\nschemas = [\"gold\"]\n\n\
    [[users]]\nname = \"intern\"\npassword = \"intern pw\"\nschemas = []\n";

/// Sorted first-column values of a query run with the psql binary as `user`.
fn psql(server: &TestServer, user: &str, password: &str, sql: &str) -> Vec<String> {
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host={} port={} user={user} dbname=lake",
            server.addr.ip(),
            server.addr.port()
        ))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Sorted ids of `gold.sales` read with the Python ADBC Flight SQL driver as `user`.
async fn adbc_ids(server: &TestServer, user: &str, password: &str) -> Vec<String> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "run `bash scripts/test.sh` to install ADBC into .venv"
    );
    let script = "import sys, adbc_driver_flightsql.dbapi as f\n\
        c = f.connect(sys.argv[1], db_kwargs={'username': sys.argv[2], 'password': sys.argv[3]})\n\
        cur = c.cursor(); cur.execute('SELECT id FROM gold.sales')\n\
        print(' '.join(sorted(str(v) for v in cur.fetch_arrow_table().column('id').to_pylist())))\n";
    let out = tokio::process::Command::new(&python)
        .args(["-c", script])
        .arg(format!("grpc://{}", server.flight.expect("flight")))
        .args([user, password])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_row_level_security_per_tenant() {
    let server = TestServer::start(TENANTS).await;
    let admin = pg(&server, "admin", "admin pw").await;
    admin
        .batch_execute(
            "CREATE SCHEMA gold; CREATE SCHEMA silver;
             CREATE TABLE gold.sales AS SELECT * FROM (VALUES (1, 'acme', 10.0), (2, 'acme', 20.0), (3, 'globex', 5.0)) AS x(id, tenant, amount);
             CREATE VIEW gold.sales_view AS SELECT id, tenant FROM gold.sales;
             CREATE TABLE silver.notes AS SELECT 1 AS id, 'n' AS note",
        )
        .await
        .unwrap();
    admin
        .batch_execute("CREATE PROCEDURE gold.my_sales() AS SELECT id FROM gold.sales ORDER BY id")
        .await
        .unwrap();
    admin
        .batch_execute(
            "ALTER TABLE gold.sales ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own_tenant ON gold.sales FOR SELECT TO acme, globex USING (tenant = current_user)",
        )
        .await
        .unwrap();

    // Each tenant sees its rows: psql, directly, through a view and through a procedure.
    for (user, pw, ids) in [
        ("acme", "acme pw", vec!["1", "2"]),
        ("globex", "globex pw", vec!["3"]),
    ] {
        assert_eq!(
            psql(&server, user, pw, "SELECT id FROM gold.sales"),
            ids,
            "{user}"
        );
        assert_eq!(
            psql(&server, user, pw, "SELECT id FROM gold.sales_view"),
            ids,
            "{user} through a view"
        );
        assert_eq!(
            psql(&server, user, pw, "CALL gold.my_sales()"),
            ids,
            "{user} through a procedure"
        );
        assert_eq!(
            psql(
                &server,
                user,
                pw,
                "SELECT id FROM gold.sales VERSION AS OF 0"
            ),
            ids,
            "{user} time travel"
        );
        // Over Flight SQL too.
        let mut f = flight(&server, user, pw).await;
        let n = flight_run(&mut f, "SELECT id FROM gold.sales")
            .await
            .unwrap();
        assert_eq!(n, ids.len(), "{user} over Flight");
        assert_eq!(adbc_ids(&server, user, pw).await, ids, "{user} over ADBC");
        // Writes to a table under row-level security stay with its owners.
        let e = pg(&server, user, pw)
            .await
            .simple_query("INSERT INTO gold.sales VALUES (9, 'x', 1.0)")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    }
    // The policy is a security barrier: a reader's predicate that fails on some value
    // (a division by zero on globex's id 3) runs only on acme's rows, so the error
    // cannot tell that a hidden row exists; leak-proof predicates and counts too.
    let acme = pg(&server, "acme", "acme pw").await;
    for (sql, want) in [
        (
            "SELECT count(*) FROM gold.sales WHERE 10 / (id - 3) > 100",
            "0",
        ),
        ("SELECT count(*) FROM gold.sales WHERE id = 3", "0"),
        ("SELECT count(*) FROM gold.sales", "2"),
        (
            "SELECT count(*) FROM (SELECT id FROM gold.sales WHERE 10 / (id - 3) < 0 LIMIT 5) x",
            "2",
        ),
        (
            "SELECT count(*) FROM gold.sales_view WHERE 10 / (id - 3) > 100",
            "0",
        ),
    ] {
        let rows = acme
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(first(&rows).as_deref(), Some(want), "{sql}");
    }
    // The owner sees every row.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM gold.sales", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // A session setting can drive a policy (one service account, many tenants).
    admin
        .batch_execute(
            "CREATE POLICY by_setting ON gold.sales TO intern USING (tenant = current_setting('app.tenant'))",
        )
        .await
        .unwrap();
    // intern reads nothing in gold until granted.
    let intern = pg(&server, "intern", "intern pw").await;
    let e = intern
        .simple_query("SELECT id FROM gold.sales")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    admin
        .batch_execute("GRANT SELECT ON TABLE gold.sales TO intern")
        .await
        .unwrap();
    intern
        .batch_execute("SET app.tenant = 'globex'")
        .await
        .unwrap();
    let rows = intern
        .simple_query("SELECT id FROM gold.sales")
        .await
        .unwrap();
    assert_eq!(first(&rows).as_deref(), Some("3"));
    // What the catalog functions report follows the grant's table, not its schema.
    let row = intern
        .query_one(
            "SELECT has_table_privilege('intern', 'gold.sales', 'SELECT'), \
                    has_table_privilege('gold.sales_view', 'SELECT'), \
                    pg_has_role('intern', 'USAGE'), pg_has_role('pg_read_all_stats', 'USAGE')",
            &[],
        )
        .await
        .unwrap();
    let got: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(got, (true, false, true, false));
    let admin_role: bool = admin
        .query_one("SELECT pg_has_role('pg_read_all_stats', 'USAGE')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(admin_role, "full users hold every role, as superusers do");
    // Grants on a schema cover its tables; REVOKE takes them back.
    let e = intern
        .simple_query("SELECT * FROM silver.notes")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    admin
        .batch_execute("GRANT SELECT ON ALL TABLES IN SCHEMA silver TO intern")
        .await
        .unwrap();
    intern
        .simple_query("SELECT * FROM silver.notes")
        .await
        .unwrap();
    admin
        .batch_execute("REVOKE SELECT ON SCHEMA silver FROM intern")
        .await
        .unwrap();
    let e = intern
        .simple_query("SELECT * FROM silver.notes")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    // INSERT granted on a table without row-level security works.
    admin
        .batch_execute("GRANT INSERT ON TABLE silver.notes TO intern")
        .await
        .unwrap();
    intern
        .simple_query("INSERT INTO silver.notes VALUES (2, 'm')")
        .await
        .unwrap();
    // What is in force, where clients look.
    let rows = admin
        .simple_query(
            "SELECT privilege_type FROM information_schema.table_privileges WHERE grantee = 'intern' AND table_name = 'notes'",
        )
        .await
        .unwrap();
    assert_eq!(first(&rows).as_deref(), Some("INSERT"));
    assert_eq!(
        psql(
            &server,
            "acme",
            "acme pw",
            "SELECT policyname FROM pg_catalog.pg_policies WHERE tablename = 'sales'"
        ),
        vec!["by_setting", "own_tenant"]
    );
    // psql's \dp: readers' schemas and grants as pg_class.relacl items.
    let out = std::process::Command::new("psql")
        .arg(format!(
            "host={} port={} user=admin dbname=lake",
            server.addr.ip(),
            server.addr.port()
        ))
        .args([
            "-X",
            "-A",
            "-c",
            "\\dp gold.sales",
            "-c",
            "\\dp silver.notes",
        ])
        .env("PGPASSWORD", "admin pw")
        .output()
        .expect("psql runs");
    let dp = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{dp}");
    for item in [
        "gold|sales|table|acme=r/tidepool\nglobex=r/tidepool\nintern=r/tidepool|",
        "silver|notes|table|intern=a/tidepool|",
    ] {
        assert!(dp.contains(item), "{item:?} in {dp}");
    }
    // Readers cannot grant, and unknown roles are 42704.
    let e = intern
        .simple_query("GRANT SELECT ON TABLE gold.sales TO intern")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    let e = admin
        .simple_query("GRANT SELECT ON TABLE gold.sales TO nobody")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_OBJECT), "{e}");
    // Grants and policies live in the lake: a restarted server applies them.
    drop((admin, intern));
    let lake = server.stop().await;
    let server = TestServer::start_on(lake, TENANTS).await;
    assert_eq!(
        psql(&server, "acme", "acme pw", "SELECT id FROM gold.sales"),
        vec!["1", "2"]
    );
    assert_eq!(
        psql(
            &server,
            "intern",
            "intern pw",
            "SET app.tenant = 'acme'; SELECT id FROM gold.sales"
        ),
        vec!["1", "2"]
    );
    // Disabling row-level security shows every row to readers with SELECT.
    let admin = pg(&server, "admin", "admin pw").await;
    admin
        .batch_execute("ALTER TABLE gold.sales DISABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    assert_eq!(
        psql(&server, "acme", "acme pw", "SELECT id FROM gold.sales"),
        vec!["1", "2", "3"]
    );
}

/// MERGE, and the statements that run as one (INSERT ... ON CONFLICT, UPDATE ... FROM),
/// need the privilege of each action they can take, as in PostgreSQL: an upsert needs
/// INSERT and UPDATE, not DELETE; a MERGE that can delete needs DELETE too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_needs_the_privileges_of_its_actions() {
    let server = TestServer::start(TENANTS).await;
    let admin = pg(&server, "admin", "admin pw").await;
    admin
        .batch_execute(
            "CREATE SCHEMA gold;
             CREATE TABLE gold.kv AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS x(k, v);
             GRANT SELECT, INSERT ON gold.kv TO acme",
        )
        .await
        .unwrap();
    let acme = pg(&server, "acme", "acme pw").await;
    let upsert = "INSERT INTO gold.kv VALUES (2, 'B'), (3, 'c') \
                  ON CONFLICT (k) DO UPDATE SET v = excluded.v";
    let err = acme.batch_execute(upsert).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    // DO NOTHING only inserts.
    acme.batch_execute("INSERT INTO gold.kv VALUES (2, 'x'), (4, 'd') ON CONFLICT (k) DO NOTHING")
        .await
        .unwrap();
    admin
        .batch_execute("GRANT UPDATE ON gold.kv TO acme")
        .await
        .unwrap();
    acme.batch_execute(upsert).await.unwrap();
    let err = acme
        .batch_execute(
            "MERGE INTO gold.kv t USING (VALUES (1)) AS s(k) ON t.k = s.k WHEN MATCHED THEN DELETE",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    let rows = admin
        .query("SELECT k, v FROM gold.kv ORDER BY k", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (1, "a".to_string()),
            (2, "B".to_string()),
            (3, "c".to_string()),
            (4, "d".to_string())
        ]
    );
}
