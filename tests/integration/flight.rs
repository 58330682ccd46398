//! Arrow Flight SQL: the real server on port 0, the arrow-flight Flight SQL client over
//! real sockets, every RPC a client uses.

use std::sync::Arc;
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo};
use arrow_flight::{CancelFlightInfoRequest, FlightInfo};
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use futures::{StreamExt, TryStreamExt};
use tidepool::protocol::flight::client::{self, ConnectOptions};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::TestServer;

pub(crate) type Client = FlightSqlServiceClient<Channel>;

fn url(server: &TestServer) -> String {
    format!("grpc://{}", server.flight.expect("flight enabled"))
}

pub(crate) async fn connect(
    server: &TestServer,
    user: Option<(&str, &str)>,
) -> Result<Client, client::ClientError> {
    client::connect(&ConnectOptions {
        url: url(server),
        user: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        ca: None,
    })
    .await
}

pub(crate) async fn fetch(client: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let stream = client
            .do_get(ep.ticket.expect("ticket"))
            .await
            .expect("do_get");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("batches"));
    }
    out
}

pub(crate) fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn strings(batches: &[RecordBatch], col: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = datafusion::arrow::compute::cast(
            b.column_by_name(col).expect("column"),
            &DataType::Utf8,
        )
        .unwrap();
        let s = c.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..s.len()).map(|i| s.value(i).to_string()));
    }
    out
}

pub(crate) fn status_of(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        arrow_flight::error::FlightError::Arrow(
            datafusion::arrow::error::ArrowError::IpcError(m),
        ) => tonic::Status::unknown(m),
        other => panic!("not a status: {other:?}"),
    }
}

/// GetTables, fetched: (schema pattern, name pattern, types, include schema).
async fn tables(
    c: &mut Client,
    schema: Option<&str>,
    name: Option<&str>,
    types: &[&str],
    include_schema: bool,
) -> Vec<RecordBatch> {
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: schema.map(str::to_string),
            table_name_filter_pattern: name.map(str::to_string),
            table_types: types.iter().map(|t| t.to_string()).collect(),
            include_schema,
        })
        .await
        .expect("get_tables");
    fetch(c, info).await
}

const SETUP: &str = "CREATE SCHEMA gold;
CREATE TABLE gold.orders AS SELECT * FROM (VALUES (1, 42, 'new', 10.5), (2, 42, 'paid', 20.0), (3, 7, 'paid', 5.25)) AS t(order_id, customer_id, status, amount);
CREATE VIEW gold.paid AS SELECT * FROM gold.orders WHERE status = 'paid';
CREATE PROCEDURE gold.customer_orders(customer_id BIGINT) AS SELECT order_id FROM gold.orders WHERE customer_id = :customer_id ORDER BY order_id;";

/// `[flight] advertise` names the node in every endpoint (query results and metadata
/// commands), and the ticket is still redeemed over the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_name_the_advertised_node() {
    let plain = TestServer::start("").await;
    let mut c = connect(&plain, None).await.expect("connects");
    let info = c.execute("SELECT 1 AS x".into(), None).await.unwrap();
    assert!(
        info.endpoint[0].location.is_empty(),
        "no location by default"
    );
    let server = TestServer::start(
        "[flight]\nlisten = \"127.0.0.1:0\"\nadvertise = \"grpc://query-b.example:50051\"\n",
    )
    .await;
    let mut c = connect(&server, None).await.expect("connects");
    let info = c.execute("SELECT 1 AS x".into(), None).await.unwrap();
    let at: Vec<&str> = info.endpoint[0]
        .location
        .iter()
        .map(|l| l.uri.as_str())
        .collect();
    assert_eq!(at, ["grpc://query-b.example:50051"]);
    assert_eq!(rows(&fetch(&mut c, info).await), 1);
    let info = c.get_catalogs().await.unwrap();
    assert_eq!(
        info.endpoint[0].location[0].uri,
        "grpc://query-b.example:50051"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_stream_batch_by_batch_and_errors_map_to_codes() {
    let server = TestServer::start("").await;
    let mut c = connect(&server, None).await.expect("connects");
    // A result of many batches arrives as many batches.
    let info = c
        .execute(
            "SELECT value AS n, value * 2 AS m FROM generate_series(1, 300000)".into(),
            None,
        )
        .await
        .expect("execute");
    let schema = info.clone().try_decode_schema().expect("schema");
    assert_eq!(schema.field(0).name(), "n");
    let batches = fetch(&mut c, info).await;
    assert_eq!(rows(&batches), 300_000);
    assert!(batches.len() > 1, "{} batches", batches.len());
    let sum: i64 = batches
        .iter()
        .map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(sum, 300_000 * 300_001 / 2);

    // SQL errors: the Postgres side's message, a gRPC code, the SQLSTATE alongside.
    let e = status_of(c.execute("SELEC 1".into(), None).await.unwrap_err());
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(e.metadata().get("x-tidepool-sqlstate").unwrap(), "42601");
    let e = status_of(
        c.execute("SELECT * FROM nope.nothing".into(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("nothing"), "{}", e.message());
    // An error found while running surfaces in the DoGet stream.
    let info = c.execute("SELECT 1/0".into(), None).await.unwrap();
    let stream = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await;
    let e = match stream {
        Err(e) => status_of(e),
        Ok(s) => status_of(s.try_collect::<Vec<_>>().await.unwrap_err()),
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().to_lowercase().contains("by zero"),
        "{}",
        e.message()
    );
    // The connection is still good.
    let info = c
        .execute("SELECT 1 AS one".into(), None)
        .await
        .expect("execute");
    assert_eq!(rows(&fetch(&mut c, info).await), 1);
    // A ticket is good for one DoGet.
    let info = c.execute("SELECT 2 AS two".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    c.do_get(ticket.clone())
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let again = c.do_get(ticket).await;
    let e = match again {
        Err(e) => status_of(e),
        Ok(s) => status_of(s.try_collect::<Vec<_>>().await.unwrap_err()),
    };
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_dml_procedures_and_prepared_statements() {
    let server = TestServer::start("").await;
    let mut c = connect(&server, None).await.unwrap();
    // CommandStatementUpdate: DDL and DML, one statement per call and several in one.
    assert_eq!(
        c.execute_update("CREATE SCHEMA gold".into(), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        c.execute_update(
            "CREATE TABLE gold.orders AS SELECT * FROM (VALUES (1, 42, 'new', 10.5), (2, 42, 'paid', 20.0), (3, 7, 'paid', 5.25)) AS t(order_id, customer_id, status, amount)".into(),
            None
        )
        .await
        .unwrap(),
        3
    );
    assert_eq!(
        c.execute_update(
            "INSERT INTO gold.orders VALUES (4, 7, 'new', 1.0), (5, 9, 'new', 2.0)".into(),
            None
        )
        .await
        .unwrap(),
        2
    );
    c.execute_update(
        "CREATE VIEW gold.paid AS SELECT * FROM gold.orders WHERE status = 'paid'; CREATE PROCEDURE gold.customer_orders(customer_id BIGINT) AS SELECT order_id FROM gold.orders WHERE customer_id = :customer_id ORDER BY order_id".into(),
        None,
    )
    .await
    .unwrap();
    // DDL through the query path (ADBC's cursor.execute) runs and returns no endpoints.
    let info = c
        .execute("CREATE TABLE gold.t2 AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    assert!(info.endpoint.is_empty());
    // The Postgres side sees it all.
    let pg = server.connect().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM gold.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);

    // Procedures: CALL, EXEC, table function.
    for sql in [
        "CALL gold.customer_orders(42)",
        "EXEC gold.customer_orders @customer_id = 42",
        "SELECT order_id FROM gold.customer_orders(42) o ORDER BY 1",
    ] {
        let info = c.execute(sql.into(), None).await.unwrap();
        let b = fetch(&mut c, info).await;
        assert_eq!(strings(&b, "order_id"), vec!["1", "2"], "{sql}");
    }

    // Prepared statement with a parameter: create, bind, execute (twice), close.
    let mut p = c
        .prepare(
            "SELECT order_id, status FROM gold.orders WHERE customer_id = $1 ORDER BY order_id"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p.dataset_schema().unwrap().field(0).name(), "order_id");
    assert_eq!(p.parameter_schema().unwrap().fields().len(), 1);
    let bind = |v: i64| {
        RecordBatch::try_from_iter(vec![("$1", Arc::new(Int64Array::from(vec![v])) as _)]).unwrap()
    };
    p.set_parameters(bind(42)).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "order_id"),
        vec!["1", "2"]
    );
    p.set_parameters(bind(7)).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "status"),
        vec!["paid", "new"]
    );
    // A prepared CALL takes its parameter too.
    let mut call = c
        .prepare("CALL gold.customer_orders($1)".into(), None)
        .await
        .unwrap();
    call.set_parameters(bind(7)).unwrap();
    let info = call.execute().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "order_id"),
        vec!["3", "4"]
    );
    // Prepared updates run once per bound row.
    let mut ins = c
        .prepare(
            "INSERT INTO gold.orders VALUES ($1, 1, 'x', 0.5)".into(),
            None,
        )
        .await
        .unwrap();
    ins.set_parameters(
        RecordBatch::try_from_iter(vec![(
            "$1",
            Arc::new(Int64Array::from(vec![10, 11, 12])) as _,
        )])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ins.execute_update().await.unwrap(), 3);
    let n: i64 = pg
        .query_one("SELECT count(*) FROM gold.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 8);
    // Unbound parameters are an error, not a crash.
    let mut unbound = c
        .prepare("SELECT $1::BIGINT + 1 AS x".into(), None)
        .await
        .unwrap();
    let e = status_of(unbound.execute().await.unwrap_err());
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let handle_gone = p.close().await;
    assert!(handle_gone.is_ok());
    // Several statements cannot be prepared.
    let e = status_of(
        c.prepare("SELECT 1; SELECT 2".into(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_rpcs_describe_the_lake() {
    let server = TestServer::start("").await;
    let pg = server.connect().await;
    pg.batch_execute(SETUP).await.unwrap();
    pg.batch_execute("CREATE SCHEMA silver; CREATE TABLE silver.events AS SELECT 1 AS id")
        .await
        .unwrap();
    let mut c = connect(&server, None).await.unwrap();

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 2);

    let info = c.get_catalogs().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "catalog_name"),
        vec!["lake"]
    );

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = strings(&fetch(&mut c, info).await, "db_schema_name");
    assert!(
        schemas.contains(&"gold".to_string()) && schemas.contains(&"silver".to_string()),
        "{schemas:?}"
    );
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("g%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut c, info).await, "db_schema_name"),
        vec!["gold"]
    );

    // Tables without schemas, all of them.
    let b = tables(&mut c, None, None, &[], false).await;
    let names = strings(&b, "table_name");
    for t in ["orders", "paid", "events"] {
        assert!(names.contains(&t.to_string()), "{t} in {names:?}");
    }
    // Filtered by pattern and type, with Arrow schemas.
    let b = tables(&mut c, Some("gold"), Some("ord%"), &["TABLE"], true).await;
    assert_eq!(strings(&b, "table_name"), vec!["orders"]);
    let schema_bytes = b[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_binary::<i32>()
        .value(0)
        .to_vec();
    let decoded: datafusion::arrow::datatypes::Schema =
        arrow_flight::IpcMessage(schema_bytes.into())
            .try_into()
            .unwrap();
    let cols: Vec<&str> = decoded.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(cols, vec!["order_id", "customer_id", "status", "amount"]);
    let b = tables(&mut c, None, None, &["VIEW"], false).await;
    assert_eq!(strings(&b, "table_name"), vec!["paid"]);

    let info = c.get_table_types().await.unwrap();
    let types = strings(&fetch(&mut c, info).await, "table_type");
    assert!(types.contains(&"TABLE".to_string()) && types.contains(&"VIEW".to_string()));

    let keys = arrow_flight::sql::CommandGetPrimaryKeys {
        catalog: None,
        db_schema: Some("gold".into()),
        table: "orders".into(),
    };
    let info = c.get_primary_keys(keys).await.unwrap();
    assert_eq!(rows(&fetch(&mut c, info).await), 0);
    let info = c
        .get_exported_keys(arrow_flight::sql::CommandGetExportedKeys {
            catalog: None,
            db_schema: Some("gold".into()),
            table: "orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut c, info).await), 0);
    let info = c
        .get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            catalog: None,
            db_schema: Some("gold".into()),
            table: "orders".into(),
        })
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut c, info).await), 0);

    let info = c
        .get_cross_reference(arrow_flight::sql::CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: Some("gold".into()),
            pk_table: "orders".into(),
            fk_catalog: None,
            fk_db_schema: Some("silver".into()),
            fk_table: "events".into(),
        })
        .await
        .unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(0).name(), "pk_catalog_name");
    assert_eq!(schema.fields().len(), 13);
    assert_eq!(rows(&fetch(&mut c, info).await), 0);

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = strings(&fetch(&mut c, info).await, "type_name");
    assert!(
        types.contains(&"bigint".to_string()) && types.contains(&"varchar".to_string()),
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_running_query() {
    let server = TestServer::start("").await;
    let mut c = connect(&server, None).await.unwrap();
    let slow = "SELECT count(*) FROM generate_series(1, 2000000000) a";
    for action in ["CancelFlightInfo", "CancelQuery"] {
        let info = c.execute(slow.into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut stream = c.do_get(ticket).await.unwrap();
        let mut canceller = c.clone();
        let info2 = info.clone();
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if action == "CancelFlightInfo" {
                let mut flight =
                    arrow_flight::FlightClient::new_from_inner(canceller.inner().clone());
                flight
                    .cancel_flight_info(CancelFlightInfoRequest::new(info2))
                    .await
                    .map(|r| r.status)
            } else {
                use arrow_flight::sql::ProstMessageExt;
                use prost::Message;
                let req = arrow_flight::sql::ActionCancelQueryRequest {
                    info: info2.encode_to_vec().into(),
                };
                let action = arrow_flight::Action::new("CancelQuery", req.as_any().encode_to_vec());
                let mut out = canceller.do_action(action).await.unwrap();
                let r = out.next().await.unwrap().unwrap();
                let any = arrow_flight::sql::Any::decode(&*r.body).unwrap();
                Ok(any
                    .unpack::<arrow_flight::sql::ActionCancelQueryResult>()
                    .unwrap()
                    .unwrap()
                    .result)
            }
        });
        let started = std::time::Instant::now();
        let err = loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break status_of(e),
                None => panic!("{action}: the query finished instead of being cancelled"),
            }
        };
        assert_eq!(err.code(), Code::Cancelled, "{action}: {err:?}");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(
            cancel.await.unwrap().unwrap(),
            1,
            "{action}: reported cancelled"
        );
    }
    // The client keeps working.
    let info = c.execute("SELECT 1 AS x".into(), None).await.unwrap();
    assert_eq!(rows(&fetch(&mut c, info).await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_tokens_and_permissions() {
    let server = TestServer::start(
        "[flight]\nlisten = \"127.0.0.1:0\"\ntoken_ttl_secs = 2\n\
         [[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
         [[users]]\nname = \"powerbi\"\npassword = \"reader pw\"\nschemas = [\"gold\"]\n",
    )
    .await;
    let admin_pg =
        crate::common::connect(&format!("{} password='admin pw'", server.conn_str("admin"))).await;
    admin_pg.batch_execute(SETUP).await.unwrap();
    admin_pg
        .batch_execute("CREATE SCHEMA silver; CREATE TABLE silver.raw AS SELECT 1 AS x")
        .await
        .unwrap();

    // No credentials: Unauthenticated.
    let mut anon = connect(&server, None).await.unwrap();
    let e = status_of(anon.execute("SELECT 1".into(), None).await.unwrap_err());
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Wrong password: the handshake fails.
    let err = connect(&server, Some(("admin", "wrong")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("authentication failed")
            || err.to_string().contains("Unauthenticated"),
        "{err}"
    );
    // A made-up token: Unauthenticated.
    anon.set_token("not-a-token".into());
    let e = status_of(anon.execute("SELECT 1".into(), None).await.unwrap_err());
    assert_eq!(e.code(), Code::Unauthenticated);

    // A good handshake gives a token that works; the session keeps its settings.
    let mut admin = connect(&server, Some(("admin", "admin pw"))).await.unwrap();
    assert!(admin.token().is_some());
    admin
        .execute_update("SET search_path = gold".into(), None)
        .await
        .unwrap();
    let info = admin
        .execute("SELECT count(*) AS n FROM orders".into(), None)
        .await
        .unwrap();
    assert_eq!(strings(&fetch(&mut admin, info).await, "n"), vec!["3"]);

    // A reader reads its schema and nothing else; writes are PermissionDenied.
    let mut reader = connect(&server, Some(("powerbi", "reader pw")))
        .await
        .unwrap();
    let info = reader
        .execute("CALL gold.customer_orders(42)".into(), None)
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut reader, info).await), 2);
    let e = status_of(
        reader
            .execute("SELECT * FROM silver.raw".into(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = status_of(
        reader
            .execute_update("CREATE TABLE gold.x AS SELECT 1 AS y".into(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let info = reader
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut reader, info).await, "db_schema_name"),
        vec!["gold"]
    );

    // Tokens expire.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = status_of(admin.execute("SELECT 1".into(), None).await.unwrap_err());
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (_cert, tls) = crate::common::self_signed_tls(dir.path());
    let server = TestServer::start(&tls).await;
    let addr = server.flight.unwrap();
    let mut c = client::connect(&ConnectOptions {
        url: format!("grpc+tls://localhost:{}", addr.port()),
        ca: Some(dir.path().join("cert.pem")),
        ..Default::default()
    })
    .await
    .expect("TLS connects");
    let (_, b) = client::query(&mut c, "SELECT 41 + 1 AS x").await.unwrap();
    assert_eq!(strings(&b, "x"), vec!["42"]);
    // Plaintext against the TLS port fails; it never silently works.
    let plain = client::connect(&ConnectOptions {
        url: format!("grpc://127.0.0.1:{}", addr.port()),
        ..Default::default()
    })
    .await;
    match plain {
        Err(_) => {}
        Ok(mut p) => assert!(client::query(&mut p, "SELECT 1").await.is_err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_cli_over_flight() {
    let server = TestServer::start("").await;
    server.connect().await.batch_execute(SETUP).await.unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args([
            "sql",
            "--flight",
            &url(&server),
            "--format",
            "csv",
            "SELECT order_id, status FROM gold.orders ORDER BY order_id",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1,new") && text.contains("3,paid"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["sql", "--flight", &url(&server), "SELECT * FROM gold.nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

/// The Python ADBC Flight SQL driver and pyarrow.flight (installed into .venv by
/// scripts/test.sh) against a server with users: tests/python/flight_adbc.py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_and_pyarrow_end_to_end() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs adbc-driver-flightsql and pyarrow",
        python.display()
    );
    let server =
        TestServer::start("[[users]]\nname = \"analyst\"\npassword = \"an4lyst pw\"\n").await;
    let pg = crate::common::connect(&format!(
        "{} password='an4lyst pw'",
        server.conn_str("analyst")
    ))
    .await;
    pg.batch_execute(SETUP).await.unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/flight_adbc.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(url(&server))
        .arg("analyst")
        .arg("an4lyst pw")
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "adbc test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("adbc flight sql: ok"));
}

/// A scan whose partitions stream apart answers with one endpoint per partition, read at
/// once; ORDER BY or LIMIT keep one endpoint; cancelling the query stops every endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_stream_as_separate_endpoints() {
    let server = TestServer::start("[engine]\ntarget_partitions = 3\n").await;
    let mut c = connect(&server, None).await.unwrap();
    for sql in [
        "CREATE SCHEMA s",
        "CREATE TABLE s.t AS SELECT v AS id, v % 7 AS k FROM generate_series(1, 40000) AS g(v)",
        "INSERT INTO s.t SELECT v AS id, v % 7 AS k FROM generate_series(40001, 80000) AS g(v)",
        "INSERT INTO s.t SELECT v AS id, v % 7 AS k FROM generate_series(80001, 120000) AS g(v)",
    ] {
        c.execute_update(sql.into(), None).await.expect(sql);
    }
    let info = c
        .execute("SELECT id, k FROM s.t".into(), None)
        .await
        .unwrap();
    assert!(info.endpoint.len() > 1, "{} endpoints", info.endpoint.len());
    assert!(!info.ordered);
    // Read every endpoint at once, as ADBC does.
    let mut readers = tokio::task::JoinSet::new();
    for ep in info.endpoint {
        let mut inner = c.inner_mut().clone();
        readers.spawn(async move {
            let stream = inner.do_get(ep.ticket.unwrap()).await.unwrap().into_inner();
            let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                stream.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
            );
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(b) = batches.next().await {
                let b = b.unwrap();
                n += b.num_rows() as i64;
                sum += b
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .flatten()
                    .sum::<i64>();
            }
            (n, sum)
        });
    }
    let (mut n, mut sum) = (0, 0);
    while let Some(r) = readers.join_next().await {
        let (a, b) = r.unwrap();
        n += a;
        sum += b;
    }
    assert_eq!((n, sum), (120_000, 120_000 * 120_001 / 2));
    // One endpoint where order or a single answer matters.
    for sql in [
        "SELECT id FROM s.t ORDER BY id",
        "SELECT id FROM s.t LIMIT 10",
        "SELECT count(*) FROM s.t",
    ] {
        let info = c.execute(sql.into(), None).await.unwrap();
        assert_eq!(info.endpoint.len(), 1, "{sql}");
    }
    // The sequential client helper reads all endpoints too.
    let (_, batches) = client::query(&mut c, "SELECT id FROM s.t WHERE k = 3")
        .await
        .unwrap();
    assert_eq!(rows(&batches), 17_143);
    // Cancelling the query stops every endpoint: the ones not started are dropped.
    let info = c
        .execute("SELECT id, k FROM s.t".into(), None)
        .await
        .unwrap();
    let mut flight = arrow_flight::FlightClient::new_from_inner(c.inner().clone());
    flight
        .cancel_flight_info(CancelFlightInfoRequest::new(info.clone()))
        .await
        .unwrap();
    for ep in info.endpoint {
        let err = match c.do_get(ep.ticket.unwrap()).await {
            Err(e) => status_of(e),
            Ok(s) => status_of(s.try_collect::<Vec<_>>().await.unwrap_err()),
        };
        assert!(
            matches!(err.code(), Code::NotFound | Code::Cancelled),
            "{err:?}"
        );
    }
}
