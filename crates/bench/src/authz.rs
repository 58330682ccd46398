//! `tidepool-bench authz`: what authorization adds to a statement. A reader's session (a
//! `[[users]]` entry with `schemas = ["gold"]`) runs a point lookup on a gold table of N
//! rows and TPC-H q1 over a generated `gold.lineitem`, end to end in the engine (parse,
//! plan, authorize, execute, read every row); separately, the authorization step alone
//! (the plan walk and the decision) is timed on each statement's plan. The ratio of the
//! two medians is what authorization costs that statement.

use std::time::{Duration, Instant};

use crate::procedures::run_sql;
use tidepool::engine::authz::{Access, UserRights, plan::touches};
use tidepool::engine::{Engine, EngineOptions};
use tidepool::lake::Lake;

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

const Q1: &str = "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
  sum(l_extendedprice) AS sum_base_price,
  sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
  avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc,
  count(*) AS count_order
FROM gold.lineitem
WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus";

pub async fn run(runs: usize, rows: usize, lineitem_rows: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let lake = Lake::open(&tidepool::config::LakeConfig {
        root: tmp.path().join("lake").display().to_string(),
        ..Default::default()
    })?;
    let mut users = std::collections::BTreeMap::new();
    users.insert(
        "bi".to_string(),
        UserRights {
            schemas: Some(["gold".to_string()].into_iter().collect()),
            files: Vec::new(),
        },
    );
    let options = EngineOptions {
        access: Access {
            enforced: true,
            users,
            lake_root: Some(lake.root().to_string()),
            security: Default::default(),
        },
        ..Default::default()
    };
    let engine = Engine::new(
        lake,
        options,
        tidepool::pgcompat::PgCompat::new(Default::default()),
    )?;
    let mut server = engine.session(tidepool::engine::authz::SERVER_USER);
    let t = Instant::now();
    run_sql(
        &mut server,
        &format!(
            "CREATE SCHEMA gold;
             CREATE TABLE gold.fact_orders AS
               SELECT value AS order_id, value % 50000 AS customer_id,
                      CAST(value % 997 AS DOUBLE) * 1.5 AS amount
               FROM generate_series(1, {rows});
             CREATE TABLE gold.lineitem AS
               SELECT CAST(value % 50 + 1 AS DECIMAL(15,2)) AS l_quantity,
                      CAST((value % 100000) + 900 AS DECIMAL(15,2)) AS l_extendedprice,
                      CAST((value % 11) / 100.0 AS DECIMAL(15,2)) AS l_discount,
                      CAST((value % 9) / 100.0 AS DECIMAL(15,2)) AS l_tax,
                      CASE value % 3 WHEN 0 THEN 'A' WHEN 1 THEN 'N' ELSE 'R' END AS l_returnflag,
                      CASE value % 2 WHEN 0 THEN 'F' ELSE 'O' END AS l_linestatus,
                      DATE '1992-01-02' + CAST(value % 2526 AS INT) AS l_shipdate
               FROM generate_series(1, {lineitem_rows});"
        ),
    )
    .await?;
    println!(
        "tidepool-bench authz: reader of gold; gold.fact_orders {rows} rows, gold.lineitem {lineitem_rows} rows (built in {:.2} s), {runs} runs each",
        t.elapsed().as_secs_f64()
    );
    let mut reader = engine.session("bi");
    let principal = reader.principal();
    fn point(k: usize) -> String {
        format!("SELECT * FROM gold.fact_orders WHERE order_id = {k}")
    }
    fn q1(_: usize) -> String {
        Q1.to_string()
    }
    type Form = fn(usize) -> String;
    let statements: [(&str, Form); 2] = [("point lookup", point), ("TPC-H q1", q1)];
    for (name, sql) in &statements {
        for k in 0..5 {
            run_sql(&mut reader, &sql(k + 1)).await?;
        }
        let n = if *name == "TPC-H q1" {
            (runs / 20).max(5)
        } else {
            runs
        };
        let mut whole = Vec::with_capacity(n);
        for c in 0..n {
            let k = 1 + (c * 7919) % rows.max(1);
            let t = Instant::now();
            run_sql(&mut reader, &sql(k)).await?;
            whole.push(t.elapsed());
        }
        let plan = reader.dataframe(&sql(1)).await?.logical_plan().clone();
        let mut auth = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let t = Instant::now();
            let touched = touches(&plan, "public")?;
            principal.check_all(&touched)?;
            auth.push(t.elapsed());
            std::hint::black_box(touched);
        }
        let (whole, auth) = (median(&mut whole), median(&mut auth));
        println!(
            "  {name:<14} statement median {whole:.3} ms; authorization {:.2} us = {:.3}% of it",
            auth * 1000.0,
            100.0 * auth / whole
        );
    }
    Ok(())
}
