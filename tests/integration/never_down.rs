//! Never down: what a single client could do to take the whole server away, against the
//! real `tidepool serve` process (its own runtime and thread stacks), over Postgres and
//! Flight SQL. Each finding of the never-down review has a test here.

use std::time::{Duration, Instant};

use tidepool::protocol::flight::client::{self, ConnectOptions};

use crate::common::{ServeProcess, first};

const ADMIN: &str = "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n";

async fn pg(server: &ServeProcess) -> tokio_postgres::Client {
    crate::common::connect(&server.conn_str("admin", "admin pw")).await
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Deep and wide SQL, ten times the sizes that overflowed a worker's stack: answered
/// (long `IN` lists and `OR`/`AND`/`||` chains, which BI tools generate) or refused with
/// 54001, the connection kept, over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_sql_is_answered_or_refused_with_54001() {
    let mut server = ServeProcess::start(ADMIN).await;
    let c = pg(&server).await;
    c.batch_execute(
        "CREATE SCHEMA s; CREATE TABLE s.t AS SELECT * FROM generate_series(1, 10000) g(id)",
    )
    .await
    .unwrap();

    let list = |n: usize, sep: &str, f: &dyn Fn(usize) -> String| {
        (0..n).map(f).collect::<Vec<_>>().join(sep)
    };
    let answered = [
        (
            format!(
                "SELECT count(*) FROM s.t WHERE id IN ({})",
                list(75_000, ",", &|i| i.to_string())
            ),
            "10000",
        ),
        (
            format!(
                "SELECT count(*) FROM s.t WHERE id NOT IN ({})",
                list(75_000, ",", &|i| (i + 5).to_string())
            ),
            "4",
        ),
        (
            format!(
                "SELECT count(*) FROM s.t WHERE {}",
                list(20_000, " OR ", &|i| format!("id = {i}"))
            ),
            "10000",
        ),
        (
            format!(
                "SELECT count(*) FROM s.t WHERE {}",
                list(20_000, " AND ", &|_| "id > 1".into())
            ),
            "9999",
        ),
        (
            format!("SELECT length({})", list(20_000, " || ", &|_| "'a'".into())),
            "20000",
        ),
        (
            format!(
                "SELECT count(*) FROM ({}) u",
                list(2_000, " UNION ALL ", &|i| format!("SELECT {i}"))
            ),
            "2000",
        ),
        (
            format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200)),
            "1",
        ),
        (
            format!("SELECT {}1{}", "(SELECT ".repeat(16), ")".repeat(16)),
            "1",
        ),
    ];
    for (sql, want) in &answered {
        let got = first(&c, sql).await;
        assert_eq!(got.as_deref().map_err(code), Ok(*want), "{}", &sql[..80]);
    }
    let refused = [
        format!("SELECT {}", list(20_000, " + ", &|_| "1".into())),
        format!("SELECT {}", list(20_000, " - ", &|_| "1".into())),
        list(30_000, " UNION ALL ", &|i| format!("SELECT {i}")),
        list(30_000, " EXCEPT ", &|i| format!("SELECT {i}")),
        format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("SELECT {}1{}", "(SELECT ".repeat(30), ")".repeat(30)),
        format!(
            "SELECT 1 WHERE {}true{}",
            "EXISTS (SELECT 1 WHERE ".repeat(40),
            ")".repeat(40)
        ),
    ];
    for sql in &refused {
        let started = Instant::now();
        let err = c.simple_query(sql).await.expect_err(&sql[..60]);
        assert_eq!(code(&err), "54001", "{}: {err}", &sql[..60]);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            &sql[..60]
        );
        // the connection is kept
        assert_eq!(first(&c, "SELECT 1").await.unwrap(), "1");
    }

    // Over Flight SQL: the same refusal, and a long IN list answered.
    let mut f = client::connect(&ConnectOptions {
        url: format!("grpc://{}", server.flight),
        user: Some("admin".into()),
        password: Some("admin pw".into()),
        ca: None,
    })
    .await
    .expect("flight login");
    let status = f
        .execute(refused[0].clone(), None)
        .await
        .map(|_| ())
        .map_err(crate::flight::status_of)
        .expect_err("deep arithmetic over Flight");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("too complex"), "{status}");
    let info = f.execute(answered[0].0.clone(), None).await.unwrap();
    let batches = crate::flight::fetch(&mut f, info).await;
    assert_eq!(crate::flight::rows(&batches), 1);

    assert!(server.alive(), "the server died");
    server.stop_clean("deep SQL").await;
}

/// Flight results nobody fetches hold query slots only until their tickets expire, on a
/// timer: with every slot taken by abandoned GetFlightInfo calls (and then by clients that
/// read one of two endpoints and vanish), both protocols answer again after the ticket
/// time to live, without another query having to run first. (One lane, so `SELECT 1`
/// waits for the same slots.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_flight_tickets_release_their_slots_on_a_timer() {
    let server = crate::common::TestServer::start(
        "[engine]\nmax_concurrent_queries = 4\ntarget_partitions = 2\nlight_query_rows = 0\n\
         [flight]\nlisten = \"127.0.0.1:0\"\nticket_ttl_secs = 2\n",
    )
    .await;
    let pg = server.connect().await;
    pg.batch_execute(
        "CREATE SCHEMA s; CREATE TABLE s.t AS SELECT v AS id FROM generate_series(1, 40000) g(v);
         INSERT INTO s.t SELECT v AS id FROM generate_series(40001, 80000) g(v);
         INSERT INTO s.t SELECT v AS id FROM generate_series(80001, 120000) g(v);",
    )
    .await
    .unwrap();
    let bound = Duration::from_secs(30);

    // 1. Four GetFlightInfo without DoGet take all four slots.
    for _ in 0..4 {
        let mut f = crate::flight::connect(&server, None).await.unwrap();
        f.execute("SELECT id FROM s.t".into(), None).await.unwrap();
    }
    let answered = tokio::time::timeout(bound, first(&pg, "SELECT 1")).await;
    assert_eq!(
        answered
            .expect("postgres answers after the tickets expire")
            .unwrap(),
        "1"
    );

    // 2. Four clients read the first of several endpoints and vanish.
    for _ in 0..4 {
        let mut f = crate::flight::connect(&server, None).await.unwrap();
        let info = f.execute("SELECT id FROM s.t".into(), None).await.unwrap();
        assert!(info.endpoint.len() > 1, "{} endpoints", info.endpoint.len());
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        use futures::TryStreamExt;
        let stream = f.do_get(ticket).await.unwrap();
        let _: Vec<_> = stream.try_collect().await.unwrap();
        drop(f);
    }
    let mut f = crate::flight::connect(&server, None).await.unwrap();
    let info = tokio::time::timeout(bound, f.execute("SELECT 2".into(), None))
        .await
        .expect("flight answers after the endpoints expire")
        .unwrap();
    let batches = crate::flight::fetch(&mut f, info).await;
    assert_eq!(crate::flight::rows(&batches), 1);
    let answered = tokio::time::timeout(bound, first(&pg, "SELECT 3")).await;
    assert_eq!(answered.expect("postgres answers").unwrap(), "3");
}

/// Sockets that never log in take no session slot and are pushed out by newer
/// connections; the "too many clients" refusal comes after the SSL answer, as psql expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_lock_clients_out() {
    let server = crate::common::TestServer::start(
        "[postgres]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\nstartup_timeout_secs = 2\n\
         max_startup_connections = 16\n",
    )
    .await;
    // 300 sockets that say nothing.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // Real clients log in at once, up to the four slots.
    let mut clients = Vec::new();
    for i in 0..4 {
        let c = tokio::time::timeout(Duration::from_secs(10), async {
            let (c, conn) =
                tokio_postgres::connect(&server.conn_str("tidepool"), tokio_postgres::NoTls)
                    .await
                    .expect("a real client logs in beside 300 idle sockets");
            tokio::spawn(conn);
            c
        })
        .await
        .expect("login is not queued behind idle sockets");
        assert_eq!(
            first(&c, &format!("SELECT {i}")).await.unwrap(),
            i.to_string()
        );
        clients.push(c);
    }
    // The fifth: 53300 after the startup message, over a plain client and psql's default
    // sslmode=prefer (SSLRequest answered first).
    let err = tokio_postgres::connect(&server.conn_str("tidepool"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a fifth session is refused");
    assert_eq!(code(&err), "53300", "{err}");
    let out = tokio::process::Command::new("psql")
        .arg(format!(
            "host={} port={} user=tidepool dbname=lake sslmode=prefer",
            server.addr.ip(),
            server.addr.port()
        ))
        .args(["-c", "SELECT 1"])
        .output()
        .await
        .expect("psql runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sorry, too many clients already") && !stderr.contains("SSL"),
        "{stderr}"
    );
    // A slot freed is a slot usable.
    drop(clients.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = crate::common::connect(&server.conn_str("tidepool")).await;
    assert_eq!(first(&c, "SELECT 5").await.unwrap(), "5");
    // The idle sockets were pushed out (16 may wait) or timed out: each one reads EOF.
    use tokio::io::AsyncReadExt;
    let mut closed = 0;
    for mut s in idle {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 300);
}

/// Settings in the startup packet's `options` (libpq's `PGOPTIONS`) apply to the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_apply() {
    let server = crate::common::TestServer::start("").await;
    let c = server.connect().await;
    c.batch_execute("CREATE SCHEMA s; CREATE TABLE s.t AS SELECT 7 AS x")
        .await
        .unwrap();
    let out = tokio::process::Command::new("psql")
        .arg(server.conn_str("tidepool"))
        .args([
            "-AtX",
            "-c",
            "SHOW statement_timeout",
            "-c",
            "SELECT x FROM t",
        ])
        .env("PGOPTIONS", "-c statement_timeout=1500 -c search_path=s")
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["1500ms", "7"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Answers and SQLSTATEs as PostgreSQL gives them, where tidepool gave XX000, 22000 or a
/// wrong answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_and_codes() {
    let server = crate::common::TestServer::start("").await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE SCHEMA s;
         CREATE TABLE s.t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) v(id, name);
         CREATE TABLE s.arr AS SELECT make_array(id, id) AS a FROM s.t;
         CREATE TABLE s.nn (id INT NOT NULL)",
    )
    .await
    .unwrap();
    let rows = |sql: &'static str| {
        let c = &c;
        async move {
            c.simple_query(sql)
                .await
                .map(|m| crate::common::rows_text(&m))
                .map_err(|e| code(&e))
        }
    };
    let answered: &[(&str, &[&str])] = &[
        (
            "SELECT make_array(make_array(1, 2), make_array(3, 4))",
            &["{{1,2},{3,4}}"],
        ),
        (
            "SELECT array_agg(a ORDER BY a) FROM s.arr",
            &["{{1,1},{2,2},{3,3}}"],
        ),
        (
            "SELECT (SELECT id FROM s.t WHERE id < 0), (SELECT 1 WHERE false) IS NULL",
            &["NULL|t"],
        ),
        // A correlated subquery in the select list was answered NULL for every row.
        (
            "SELECT id, (SELECT max(t2.name) FROM s.t t2 WHERE t2.id = t.id) FROM s.t t ORDER BY 1",
            &["1|a", "2|b", "3|c"],
        ),
        // Not aggregated: the value of the one matching row, NULL for none (DataFusion
        // 55 decorrelates only aggregates); with LIMIT 1 the first in its ORDER BY.
        (
            "SELECT id, (SELECT t2.name FROM s.t t2 WHERE t2.id = t.id + 1) FROM s.t t ORDER BY 1",
            &["1|b", "2|c", "3|NULL"],
        ),
        (
            "SELECT (SELECT t2.name FROM s.t t2 WHERE t2.id = t.id ORDER BY t2.name DESC LIMIT 1) \
             FROM s.t t ORDER BY 1",
            &["a", "b", "c"],
        ),
        // sqlsmith's catalog query, with an unqualified outer column.
        (
            "SELECT (SELECT nspname FROM pg_namespace WHERE oid = pronamespace) \
             FROM pg_proc WHERE proname = 'abs' LIMIT 1",
            &["pg_catalog"],
        ),
        // The catalog queries sqlsmith starts with: proargtypes is an oidvector (sent as
        // Postgres does, `700 701`) that unnests to oids pg_type has.
        (
            "SELECT count(*) FROM (SELECT unnest(proargtypes) AS a FROM pg_proc) p \
             WHERE a NOT IN (SELECT oid FROM pg_type)",
            &["0"],
        ),
        (
            "SELECT proargtypes FROM pg_proc WHERE proname = 'aclexplode'",
            &["1034"],
        ),
        (
            "SELECT table_type, is_insertable_into FROM information_schema.tables \
             WHERE table_schema = 's' AND table_name = 't'",
            &["BASE TABLE|YES"],
        ),
        (
            "SELECT nspname FROM pg_namespace n JOIN pg_proc p ON p.pronamespace = n.oid \
             WHERE p.proname = '_pg_expandarray'",
            &["information_schema"],
        ),
        (
            "SELECT attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname = 'pg_settings' AND attname LIKE 'boo%'",
            &["boot_val"],
        ),
    ];
    for (sql, want) in answered {
        assert_eq!(
            rows(sql).await,
            Ok(want.iter().map(|s| s.to_string()).collect()),
            "{sql}"
        );
    }
    let refused: &[(&str, &str)] = &[
        ("SELECT count(*) FROM s.t TABLESAMPLE SYSTEM (1)", "0A000"),
        ("INSERT INTO s.nn VALUES (NULL)", "23502"),
        ("SELECT (SELECT id FROM s.t)", "21000"),
        ("SELECT name @@ 'a' FROM s.t", "0A000"),
        // Not planned by DataFusion 55: refused, never answered NULL.
        (
            "SELECT id, (SELECT max(t2.id) FROM s.t t2 WHERE t2.id < t.id) FROM s.t t",
            "0A000",
        ),
    ];
    for (sql, want) in refused {
        assert_eq!(rows(sql).await, Err(want.to_string()), "{sql}");
    }
    // Nothing was written by the refused INSERT.
    assert_eq!(first(&c, "SELECT count(*) FROM s.nn").await.unwrap(), "0");
}
