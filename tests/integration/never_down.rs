//! Never down: what a single client could do to take the whole server away, against the
//! real `tidepool serve` process (its own runtime and thread stacks), over Postgres and
//! Flight SQL. Each finding of the never-down review has a test here.

use std::time::{Duration, Instant};

use tidepool::protocol::flight::client::{self, ConnectOptions};
use tokio_postgres::SimpleQueryMessage;

use crate::common::ServeProcess;

const ADMIN: &str = "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n";

async fn pg(server: &ServeProcess) -> tokio_postgres::Client {
    crate::common::connect(&server.conn_str("admin", "admin pw")).await
}

/// The first value of the first row of a simple query.
async fn first(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let messages = c.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .unwrap_or_default())
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
/// time to live, without another query having to run first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_flight_tickets_release_their_slots_on_a_timer() {
    let server = crate::common::TestServer::start(
        "[engine]\nmax_concurrent_queries = 4\ntarget_partitions = 2\n\
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
