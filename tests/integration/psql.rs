//! psql itself against the server: the describe commands analysts use.

use crate::common::{TestServer, orders, write_delta};

async fn psql(server: &TestServer, command: &str) -> String {
    psql_all(server, &[command]).await
}

/// Runs psql with one `-c` per command.
async fn psql_all(server: &TestServer, commands: &[&str]) -> String {
    let owned: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
    let (ok, stdout, stderr) = crate::common::psql_run(server.addr, &owned).await;
    assert!(ok, "psql {commands:?} failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_commands() {
    let server = TestServer::start("").await;
    write_delta(server.lake.path(), "gold", "fact_orders", orders(5)).await;
    write_delta(server.lake.path(), "gold", "dim_customer", orders(2)).await;
    write_delta(server.lake.path(), "bronze", "raw_orders", orders(3)).await;
    write_delta(server.lake.path(), "public", "notes", orders(1)).await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE VIEW gold.big_orders AS SELECT id, amount FROM gold.fact_orders WHERE amount > 3")
        .await
        .unwrap();

    let out = psql(&server, "\\dn").await;
    for s in ["bronze", "gold", "public"] {
        assert!(out.contains(s), "\\dn lists {s}:\n{out}");
    }

    let out = psql(&server, "\\dt gold.*").await;
    assert!(
        out.contains("fact_orders") && out.contains("dim_customer"),
        "{out}"
    );
    assert!(
        !out.contains("raw_orders"),
        "\\dt gold.* shows only gold:\n{out}"
    );

    let out = psql(&server, "\\dt").await;
    assert!(
        out.contains("notes"),
        "\\dt lists the search_path schema:\n{out}"
    );

    let out = psql(&server, "\\d gold.fact_orders").await;
    for c in [
        "id",
        "customer",
        "amount",
        "bigint",
        "text",
        "double precision",
    ] {
        assert!(out.contains(c), "\\d names {c}:\n{out}");
    }

    let out = psql(&server, "\\dv gold.*").await;
    assert!(out.contains("big_orders"), "{out}");

    let out = psql(&server, "\\l").await;
    assert!(out.contains("lake"), "{out}");

    // The `+` variants: sizes tidepool does not track print empty.
    let out = psql(&server, "\\dt+ gold.*").await;
    assert!(out.contains("fact_orders") && out.contains("Size"), "{out}");
    let out = psql(&server, "\\dv+ gold.*").await;
    assert!(out.contains("big_orders"), "{out}");
    let out = psql(&server, "\\l+").await;
    assert!(out.contains("lake"), "{out}");
    let out = psql(&server, "\\dT").await;
    assert!(out.contains("List of data types"), "{out}");
    let out = psql(&server, "\\d+ gold.fact_orders").await;
    for c in ["Storage", "Description", "customer", "double precision"] {
        assert!(out.contains(c), "\\d+ table shows {c}:\n{out}");
    }
    let out = psql(&server, "\\d+ gold.big_orders").await;
    assert!(
        out.contains("View definition:") && out.contains("amount > 3"),
        "\\d+ view prints its definition:\n{out}"
    );
    let out = psql(&server, "\\dn+").await;
    assert!(
        out.contains("Access privileges") && out.contains("gold"),
        "{out}"
    );
    let out = psql(&server, "\\du").await;
    assert!(
        out.contains("tidepool") && out.contains("Superuser"),
        "\\du lists the loopback superuser:\n{out}"
    );
    let out = psql(&server, "\\dp gold.*").await;
    assert!(out.contains("fact_orders"), "{out}");

    let out = psql_all(
        &server,
        &[
            "\\x on",
            "SELECT id, customer FROM gold.fact_orders WHERE id = 2",
        ],
    )
    .await;
    assert!(out.contains("-[ RECORD 1 ]"), "{out}");
    assert!(out.contains("customer | c2"), "{out}");

    let out = psql(&server, "SELECT count(*) AS n FROM gold.fact_orders").await;
    assert!(out.contains(" 5"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (_cert, tls_toml) = crate::common::self_signed_tls(dir.path());
    let server = TestServer::start(&tls_toml).await;
    let addr = server.addr;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                &format!(
                    "host={} port={} user=tidepool dbname=lake sslmode=require",
                    addr.ip(),
                    addr.port()
                ),
                "-c",
                "SELECT 'over tls'",
                "-c",
                "\\conninfo",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("over tls"), "{stdout}");
    assert!(
        stdout.contains("SSL connection"),
        "psql reports TLS: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tls_config_refuses_to_start() {
    let lake = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, "not a certificate").unwrap();
    std::fs::write(&key_path, "not a key").unwrap();
    let settings = crate::common::settings(
        lake.path(),
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
    );
    let err = tidepool::app::App::build(&settings)
        .await
        .err()
        .expect("must not start");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_procedures_and_views() {
    let server = TestServer::start("").await;
    write_delta(server.lake.path(), "gold", "fact_orders", orders(5)).await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE VIEW gold.big_orders AS SELECT id, amount FROM gold.fact_orders WHERE amount > 3;
             CREATE PROCEDURE gold.order_by_id(order_id BIGINT, min_amount DOUBLE DEFAULT 0)
             AS SELECT id, amount FROM gold.fact_orders WHERE id = :order_id AND amount >= :min_amount",
        )
        .await
        .unwrap();
    let out = psql(&server, "\\df gold.*").await;
    assert!(
        out.contains("order_by_id"),
        "\\df lists the procedure:\n{out}"
    );
    assert!(
        out.contains("order_id bigint, min_amount double DEFAULT 0"),
        "\\df shows the arguments:\n{out}"
    );
    assert!(out.contains("proc"), "{out}");
    let out = psql(&server, "\\df+ gold.*").await;
    assert!(
        out.contains("order_by_id")
            && out.contains("Source code")
            && out.contains("AS SELECT id, amount"),
        "\\df+ shows the procedure's source:\n{out}"
    );
    let out = psql(&server, "\\sf gold.order_by_id").await;
    assert!(
        out.contains("CREATE PROCEDURE gold.order_by_id (order_id BIGINT")
            && out.contains("WHERE id = $order_id"),
        "\\sf prints the procedure as stored:\n{out}"
    );
    let out = psql(&server, "\\dv").await;
    assert!(out.contains("big_orders"), "\\dv lists the view:\n{out}");
    let out = psql(
        &server,
        "SELECT schemaname, viewname FROM pg_catalog.pg_views WHERE viewname = 'big_orders'",
    )
    .await;
    assert!(out.contains("gold       | big_orders"), "pg_views:\n{out}");
    let out = psql(&server, "CALL gold.order_by_id(4)").await;
    assert!(out.contains("(1 row)"), "{out}");
}

/// Every describe command of psql 15 without `+` answers (ON_ERROR_STOP: any error fails
/// the run), and the ones that read tidepool-specific corners show what PostgreSQL shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_every_describe_command_answers() {
    let server = TestServer::start("").await;
    write_delta(server.lake.path(), "gold", "fact_orders", orders(5)).await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE VIEW gold.big_orders AS SELECT id, amount FROM gold.fact_orders WHERE amount > 3;
             COMMENT ON TABLE gold.fact_orders IS 'one row per order'",
        )
        .await
        .unwrap();
    let commands = [
        "\\d",
        "\\da",
        "\\daS",
        "\\dA",
        "\\dA+",
        "\\dAc",
        "\\dAf",
        "\\dAo",
        "\\dAp",
        "\\db",
        "\\dc",
        "\\dcS",
        "\\dC",
        "\\dd",
        "\\ddS",
        "\\dD",
        "\\ddp",
        "\\dE",
        "\\di",
        "\\dm",
        "\\ds",
        "\\dt",
        "\\dtS",
        "\\dv",
        "\\des",
        "\\det",
        "\\deu",
        "\\dew",
        "\\df",
        "\\dfS",
        "\\dF",
        "\\dFd",
        "\\dFp",
        "\\dFt",
        "\\dFt+",
        "\\des+",
        "\\deu+",
        "\\dew+",
        "\\dg",
        "\\dl",
        "\\dL",
        "\\dn",
        "\\dnS",
        "\\do",
        "\\doS",
        "\\dO",
        "\\dOS",
        "\\dp",
        "\\dP",
        "\\drds",
        "\\dRp",
        "\\dRs",
        "\\dT",
        "\\dTS",
        "\\du",
        "\\dx",
        "\\dx+",
        "\\dX",
        "\\dy",
        "\\l",
        "\\lo_list",
        "\\z",
        "\\dconfig",
        "\\dconfig+",
        "\\db+",
    ];
    for c in commands {
        psql(&server, c).await;
    }
    let out = psql(&server, "\\dL").await;
    assert!(
        out.contains("plpgsql") && out.contains("PL/pgSQL procedural language"),
        "\\dL joins pg_description on tableoid:\n{out}"
    );
    let out = psql(&server, "\\doS+ +").await;
    assert!(out.contains("int8pl"), "operator functions by name:\n{out}");
    let out = psql(&server, "\\dA+ btree").await;
    assert!(out.contains("bthandler"), "access method handlers:\n{out}");
    let out = psql(&server, "\\dO").await;
    assert!(out.contains("List of collations"), "{out}");
    let out = psql(&server, "\\dt+ gold.*").await;
    assert!(out.contains("one row per order"), "{out}");
}
