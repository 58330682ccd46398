//! The admin gRPC API with its generated tonic client against a real server (the Flight
//! SQL port): reads, model runs with streamed progress, authentication and permissions.
//! Sources, maintenance and reloads: admin_sources.rs; the CLI's --server mode: admin_cli.rs.

use tidepool::protocol::admin::pb;
use tidepool::protocol::admin::pb::admin_client::AdminClient;
use tonic::Code;

use crate::common::TestServer;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("sql/silver")).unwrap();
    std::fs::create_dir_all(dir.path().join("sql/gold")).unwrap();
    std::fs::write(
        dir.path().join("sql/silver/orders.sql"),
        "{{ config(materialized='table', tags=['nightly']) }}\nselect * from {{ source('kafka', 'orders') }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sql/gold/revenue.sql"),
        "select count(*) as n from {{ ref('orders') }}",
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_read_only_rpcs() {
    let dir = project();
    let server = TestServer::start(&format!(
        "[project]\ndir = {:?}\n[[sources]]\nname = \"orders\"\ntopics = [\"shop.orders\"]\n",
        dir.path().display().to_string()
    ))
    .await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .expect("admin connects");

    let health = admin
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "serving");
    assert_eq!(health.sources, vec!["orders".to_string()]);
    assert_eq!(health.models, 2);

    let models = admin
        .list_models(pb::ListModelsRequest {
            selector: "+gold.revenue".into(),
            exclude: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    let names: Vec<&str> = models.iter().map(|m| m.relation.as_str()).collect();
    assert_eq!(names, vec!["silver.orders", "gold.revenue"]);
    assert_eq!(models[0].materialized, "table");
    assert_eq!(models[0].tags, vec!["nightly".to_string()]);
    assert_eq!(models[0].reads, vec!["bronze.orders".to_string()]);
    assert_eq!(models[1].depends_on, vec!["silver.orders".to_string()]);
    assert!(models[1].last_run.is_none());

    // A new model file is seen by the next call (the loaded project is cached per file
    // times).
    std::fs::write(
        dir.path().join("sql/gold/extra.sql"),
        "select 1 as x from {{ ref('revenue') }}",
    )
    .unwrap();
    let all = admin
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(all.len(), 3, "{all:?}");

    let bad = admin
        .list_models(pb::ListModelsRequest {
            selector: "tag:".into(),
            exclude: String::new(),
        })
        .await
        .expect_err("bad selector");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");

    // Partitions appear once the consumer has its assignment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let status = admin
            .ingest_status(pb::IngestStatusRequest {
                source: "orders".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if !status.partitions.is_empty() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!status.partitions.is_empty());
    assert!(status.partitions.iter().all(|p| p.source == "orders"));
    let unknown = admin
        .ingest_status(pb::IngestStatusRequest {
            source: "nope".into(),
        })
        .await
        .expect_err("unknown source");
    assert_eq!(unknown.code(), Code::NotFound);

    let runs = admin
        .list_runs(pb::ListRunsRequest { limit: 5 })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert!(runs.is_empty(), "{runs:?}");
    let missing = admin
        .get_run(pb::GetRunRequest {
            run_id: "nope".into(),
        })
        .await
        .expect_err("no such run");
    assert_eq!(missing.code(), Code::NotFound);

    let typo = admin
        .list_models(pb::ListModelsRequest {
            selector: "+gold.revenue gold.revenu".into(),
            exclude: String::new(),
        })
        .await
        .expect_err("a term that matches nothing");
    assert_eq!(typo.code(), Code::InvalidArgument);
    assert!(typo.message().contains("\"gold.revenu\""), "{typo:?}");
}

/// A project of lake-only models: silver.base <- gold.a, gold.b; gold.broken fails and
/// gold.after_broken is skipped.
fn run_project(with_broken: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["sql/silver", "sql/gold"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let w = |path: &str, text: &str| std::fs::write(dir.path().join(path), text).unwrap();
    w(
        "sql/silver/base.sql",
        "{{ config(materialized='table') }}\n\
         select * from (values (1, 'a'), (2, 'b'), (3, 'c')) as t(id, name) \
         where id <= {{ var('max_id', 3) }}",
    );
    w(
        "sql/gold/a.sql",
        "{{ config(materialized='table') }}\nselect count(*) as n from {{ ref('base') }}",
    );
    w(
        "sql/gold/b.sql",
        "{{ config(materialized='view') }}\nselect max(id) as top from {{ ref('base') }}",
    );
    w(
        "sql/gold/schema.yml",
        "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: n\n        tests: [not_null]\n",
    );
    if with_broken {
        w(
            "sql/gold/broken.sql",
            "{{ config(materialized='table') }}\nselect no_such_column from {{ ref('base') }}",
        );
        w(
            "sql/gold/after_broken.sql",
            "{{ config(materialized='table') }}\nselect * from {{ ref('broken') }}",
        );
    }
    dir
}

fn project_toml(dir: &tempfile::TempDir) -> String {
    format!("[project]\ndir = {:?}\n", dir.path().display().to_string())
}

/// Collects a RunModels stream.
async fn run_to_end(
    admin: &mut AdminClient<tonic::transport::Channel>,
    request: pb::RunModelsRequest,
) -> Vec<pb::run_progress::Event> {
    let mut stream = admin
        .run_models(request)
        .await
        .expect("run starts")
        .into_inner();
    let mut events = Vec::new();
    while let Some(msg) = stream.message().await.expect("progress") {
        events.push(msg.event.expect("an event"));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_run_models_streams_progress_and_records_the_run() {
    let dir = run_project(true);
    let server = TestServer::start(&project_toml(&dir)).await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .unwrap();

    // build of everything with vars: models stream start and done, tests in between,
    // the broken model's descendant is skipped, and the run ends recorded.
    let events = run_to_end(
        &mut admin,
        pb::RunModelsRequest {
            vars: r#"{"max_id": 2}"#.into(),
            with_tests: true,
            threads: 2,
            ..Default::default()
        },
    )
    .await;
    use pb::run_progress::Event;
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Started(s) => Some(s.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 4, "after_broken never starts: {events:?}");
    assert_eq!(started[0], "silver.base");
    let done: Vec<&pb::ModelDone> = events
        .iter()
        .filter_map(|e| match e {
            Event::Model(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 5);
    assert_eq!(
        done.iter().map(|m| m.done).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(done.iter().all(|m| m.total == 5));
    let by_name = |n: &str| *done.iter().find(|m| m.name == n).expect(n);
    assert_eq!(by_name("silver.base").status, "success");
    assert_eq!(by_name("silver.base").rows, 2, "var max_id = 2 applied");
    assert_eq!(by_name("silver.base").materialized, "table");
    assert_eq!(by_name("gold.b").materialized, "view");
    assert_eq!(by_name("gold.broken").status, "error");
    assert!(by_name("gold.broken").error.contains("no_such_column"));
    assert_eq!(by_name("gold.after_broken").status, "skipped");
    let test = events
        .iter()
        .find_map(|e| match e {
            Event::Test(t) => Some(t),
            _ => None,
        })
        .expect("the not_null test ran");
    assert_eq!(test.status, "pass");
    // A test result arrives before its model's ModelDone.
    let test_at = events
        .iter()
        .position(|e| matches!(e, Event::Test(_)))
        .unwrap();
    let a_at = events
        .iter()
        .position(|e| matches!(e, Event::Model(m) if m.name == "gold.a"))
        .unwrap();
    assert!(test_at < a_at);
    let Some(Event::Finished(run)) = events.last() else {
        panic!("the last event is the recorded run: {events:?}");
    };
    assert_eq!(run.command, "admin:build");
    assert_eq!(run.status, "error");
    assert_eq!((run.models, run.tests, run.skipped), (5, 1, 1));

    // The run is what GetRun, ListRuns, ListModels and system.runs show.
    let got = admin
        .get_run(pb::GetRunRequest {
            run_id: run.run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status, "error");
    assert_eq!(got.results.len(), 6);
    let base = got
        .results
        .iter()
        .find(|r| r.name == "silver.base")
        .unwrap();
    assert_eq!((base.rows, base.materialized.as_str()), (2, "table"));
    let runs = admin
        .list_runs(pb::ListRunsRequest { limit: 5 })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs[0].run_id, run.run_id);
    let c = server.connect().await;
    let n: i64 = c
        .query_one("SELECT n FROM gold.a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // A selected run with the graph operator; ListModels shows the new last runs.
    let events = run_to_end(
        &mut admin,
        pb::RunModelsRequest {
            selector: "+gold.a".into(),
            ..Default::default()
        },
    )
    .await;
    let Some(Event::Finished(run)) = events.last() else {
        panic!("{events:?}");
    };
    assert_eq!((run.status.as_str(), run.models), ("success", 2));
    assert_eq!(run.selector, "+gold.a");
    let listed = admin
        .list_models(pb::ListModelsRequest {
            selector: "+gold.a".into(),
            exclude: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    let last = listed[1].last_run.as_ref().expect("gold.a has run");
    assert_eq!(
        (last.run_id.as_str(), last.status.as_str(), last.rows),
        (run.run_id.as_str(), "success", 1)
    );
    let n: i64 = c
        .query_one("SELECT n FROM gold.a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "without vars max_id is 3 again");

    // Bad input: a selector term naming nothing, bad vars, a run while another holds the slot.
    let err = admin
        .run_models(pb::RunModelsRequest {
            selector: "gold.a gold.nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown model");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("\"gold.nope\""), "{err:?}");
    let err = admin
        .run_models(pb::RunModelsRequest {
            vars: "[1, 2".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad vars");
    assert_eq!(err.code(), Code::InvalidArgument);
    let slot = server
        .control
        .try_begin_run("a test holding the slot")
        .unwrap();
    let err = admin
        .run_models(pb::RunModelsRequest::default())
        .await
        .expect_err("a run is in progress");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("a test holding the slot"), "{err:?}");
    drop(slot);
    let events = run_to_end(
        &mut admin,
        pb::RunModelsRequest {
            selector: "gold.b".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(events.last(), Some(Event::Finished(r)) if r.status == "success"));
}

/// The services a gRPC port lists through server reflection (what grpcurl asks).
async fn reflected_services(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("reflection connects");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = stream.message().await.unwrap().expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reflection_and_its_own_port() {
    // Default: admin, Flight SQL and reflection share the port.
    let server = TestServer::start("").await;
    assert_eq!(server.admin, server.flight);
    let services = reflected_services(server.flight.unwrap()).await;
    assert!(
        services.contains(&"tidepool.admin.v1.Admin".to_string()),
        "{services:?}"
    );

    // [admin] listen: the API moves to its own port; the Flight port no longer has it.
    let server = TestServer::start("[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let (admin_addr, flight) = (server.admin.unwrap(), server.flight.unwrap());
    assert_ne!(admin_addr, flight);
    let mut admin = AdminClient::connect(format!("http://{admin_addr}"))
        .await
        .unwrap();
    let health = admin
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "serving");
    let services = reflected_services(admin_addr).await;
    assert!(
        services.contains(&"tidepool.admin.v1.Admin".to_string()),
        "{services:?}"
    );
    assert!(
        !services.iter().any(|s| s.contains("FlightService")),
        "{services:?}"
    );
    let mut on_flight = AdminClient::connect(format!("http://{flight}"))
        .await
        .unwrap();
    let err = on_flight
        .health(pb::HealthRequest {})
        .await
        .expect_err("moved");
    assert_eq!(err.code(), Code::Unimplemented);

    // Off.
    let server = TestServer::start("[admin]\ndisabled = true\n").await;
    assert_eq!(server.admin, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_credentials_when_users_exist() {
    let server = TestServer::start("[[users]]\nname = \"ops\"\npassword = \"ops pw\"\n").await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .expect("admin connects");
    let err = admin
        .health(pb::HealthRequest {})
        .await
        .expect_err("no credentials");
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(pb::HealthRequest {});
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ops:ops pw")
    );
    request
        .metadata_mut()
        .insert("authorization", basic.parse().unwrap());
    let health = admin.health(request).await.unwrap().into_inner();
    assert_eq!(health.status, "serving");
}

/// Readers may look but not change anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_readers_may_not_call_mutating_rpcs() {
    let server = TestServer::start(
        "[[users]]\nname = \"ops\"\npassword = \"ops pw\"\n\n\
         [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n",
    )
    .await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .expect("admin connects");
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}")
            )
        )
        .parse::<tonic::metadata::MetadataValue<_>>()
        .unwrap()
    };
    let mut request = tonic::Request::new(pb::ListRunsRequest { limit: 1 });
    request
        .metadata_mut()
        .insert("authorization", basic("bi", "bi pw"));
    admin.list_runs(request).await.expect("readers may read");
    let mut request = tonic::Request::new(pb::ReloadProjectRequest {});
    request
        .metadata_mut()
        .insert("authorization", basic("bi", "bi pw"));
    let denied = admin.reload_project(request).await.expect_err("reader");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let mut request = tonic::Request::new(pb::ReloadProjectRequest {});
    request
        .metadata_mut()
        .insert("authorization", basic("ops", "ops pw"));
    let full = admin
        .reload_project(request)
        .await
        .expect("full users may reload");
    assert_eq!(full.into_inner().models, 0);
    // Every mutating RPC refuses the reader before looking at its arguments.
    let reader = || basic("bi", "bi pw");
    let mut calls: Vec<Result<(), tonic::Status>> = Vec::new();
    let mut r = tonic::Request::new(pb::RunModelsRequest::default());
    r.metadata_mut().insert("authorization", reader());
    calls.push(admin.run_models(r).await.map(|_| ()));
    let mut r = tonic::Request::new(pb::SourceRequest { source: "x".into() });
    r.metadata_mut().insert("authorization", reader());
    calls.push(admin.pause_source(r).await.map(|_| ()));
    let mut r = tonic::Request::new(pb::SourceRequest { source: "x".into() });
    r.metadata_mut().insert("authorization", reader());
    calls.push(admin.resume_source(r).await.map(|_| ()));
    let mut r = tonic::Request::new(pb::ReplaySourceRequest::default());
    r.metadata_mut().insert("authorization", reader());
    calls.push(admin.replay_source(r).await.map(|_| ()));
    let mut r = tonic::Request::new(pb::MaintainRequest::default());
    r.metadata_mut().insert("authorization", reader());
    calls.push(admin.maintain(r).await.map(|_| ()));
    for c in calls {
        assert_eq!(c.expect_err("reader").code(), Code::PermissionDenied);
    }
}
