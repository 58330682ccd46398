//! The admin gRPC API with its generated tonic client against a real server (the Flight
//! SQL port). STATUS: the read-only RPCs are covered here; the mutating ones are not
//! implemented yet (they answer Unimplemented, checked below so that changes).

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

    let not_yet = admin
        .pause_source(pb::SourceRequest {
            source: "orders".into(),
        })
        .await
        .expect_err("not implemented yet");
    assert_eq!(not_yet.code(), Code::Unimplemented);
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
    let full = admin.reload_project(request).await.expect_err("not yet");
    assert_eq!(full.code(), Code::Unimplemented, "{full:?}");
}
