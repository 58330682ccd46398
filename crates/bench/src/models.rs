//! `tidepool-bench models`: planning overhead (`ls`, `compile`, `lineage` on a generated
//! project of N models) and the cost of incremental runs (streaming and merge models after
//! new bronze rows) against a full refresh of the same models.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use tidepool::ingest::batch::RawBatch;
use tidepool::ingest::decode::JsonDecoder;
use tidepool::ingest::sink::Sink;
use tidepool::lake::Lake;

/// Writes a project of `n` models: 50 read the Kafka source, the rest join two earlier
/// models through `ref()`, use a macro, `var()` and `config()`.
pub(super) fn generate_project(dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("macros"))?;
    std::fs::write(
        dir.join("tidepool.toml"),
        "[postgres]\nenabled = false\n[http]\nenabled = false\n[[sources]]\nname = \"orders\"\ntopics = [\"shop.orders\"]\n",
    )?;
    std::fs::write(
        dir.join("macros/money.sql"),
        "{% macro cents(x) %}cast(round({{ x }} * 100) as bigint){% endmacro %}\n",
    )?;
    for i in 0..n {
        let schema = format!("layer{}", i % 10);
        std::fs::create_dir_all(dir.join("sql").join(&schema))?;
        let sql = if i < 50 {
            "select id, customer, amount from {{ source('kafka', 'orders') }}\n".to_string()
        } else {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (j, k) = ((h % i as u64) as usize, ((h >> 20) % i as u64) as usize);
            let mat = if i % 3 == 0 { "table" } else { "view" };
            format!(
                "{{{{ config(materialized='{mat}', tags=['t{}']) }}}}\nselect a.id, a.customer, a.amount, {{{{ cents('a.amount') }}}} as cents\nfrom {{{{ ref('m{j}') }}}} a\njoin {{{{ ref('m{k}') }}}} b on a.id = b.id\nwhere a.amount > {{{{ var('min', 0) }}}}\n",
                i % 7
            )
        };
        std::fs::write(dir.join("sql").join(&schema).join(format!("m{i}.sql")), sql)?;
    }
    Ok(())
}

/// The `tidepool` binary next to this one (cargo builds both into one folder).
fn tidepool_exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("tidepool");
    if !exe.exists() {
        anyhow::bail!(
            "{} is missing: build it too (cargo build --release --workspace --bins)",
            exe.display()
        );
    }
    Ok(exe)
}

pub fn planning(n: usize, runs: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    generate_project(tmp.path(), n)?;
    println!("tidepool-bench models: a generated project of {n} models");
    let config = tmp.path().join("tidepool.toml");
    for cmd in [&["ls"][..], &["compile"][..], &["lineage"][..]] {
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            let out = std::process::Command::new(tidepool_exe()?)
                .arg("--config")
                .arg(&config)
                .arg("--lake")
                .arg(tmp.path().join("lake"))
                .args(cmd)
                .output()?;
            if !out.status.success() {
                anyhow::bail!(
                    "tidepool {} failed: {}",
                    cmd.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            let listed = String::from_utf8_lossy(&out.stdout).lines().count();
            if cmd == ["ls"] && listed != n {
                anyhow::bail!("tidepool ls listed {listed} models, not {n}");
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "  tidepool {:<8} {:>7.0} ms median of {} (process start to exit; min {:.0} ms, max {:.0} ms)",
            cmd.join(" "),
            times[times.len() / 2],
            times.len(),
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}

/// Bronze events: ids `from..to`, all at `version`.
fn events_batch(
    from: i64,
    to: i64,
    version: i64,
) -> anyhow::Result<arrow::record_batch::RecordBatch> {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("version", DataType::Int64, false),
    ]));
    let ids: Vec<i64> = (from..to).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("c{}", i % 10_000)),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter()
                .map(|i| (i % 1000) as f64 + version as f64 / 10.0),
        )),
        Arc::new(Int64Array::from(vec![version; ids.len()])),
    ];
    Ok(arrow::record_batch::RecordBatch::try_new(schema, cols)?)
}

async fn append_events(
    lake: &Arc<Lake>,
    batches: Vec<arrow::record_batch::RecordBatch>,
) -> anyhow::Result<()> {
    let url = lake.table_url("bronze", "events")?;
    if let Ok(p) = url.to_file_path() {
        std::fs::create_dir_all(p)?;
    }
    let t = deltalake::DeltaTable::try_from_url(url).await?;
    t.write(batches)
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await?;
    Ok(())
}

/// Which bronze rows the incremental benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shapes {
    Orders,
    Narrow,
    Both,
}

impl Shapes {
    pub fn shapes(self) -> Vec<Shape> {
        match self {
            Shapes::Orders => vec![Shape::Orders],
            Shapes::Narrow => vec![Shape::Narrow],
            Shapes::Both => vec![Shape::Narrow, Shape::Orders],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `bronze.events`: id, customer, amount, version.
    Narrow,
    /// `bronze.orders`: order events decoded as the Kafka ingest does (nested items,
    /// payment, statuses, `_raw` and the Kafka metadata columns).
    Orders,
}

/// The two models over each shape: (file, SQL).
fn models(shape: Shape) -> [(&'static str, &'static str); 2] {
    match shape {
        Shape::Narrow => [
            (
                "events_stream",
                "{{ config(materialized='streaming') }}\nselect id, customer, amount * 2 as doubled, version from bronze.events\n",
            ),
            (
                "events_latest",
                "{{ config(materialized='incremental', unique_key='id') }}\nselect id, customer, amount, version from bronze.events\n{% if is_incremental() %}where version > (select max(version) from {{ this }}){% endif %}\n",
            ),
        ],
        Shape::Orders => [
            (
                "orders_stream",
                "{{ config(materialized='streaming') }}\nselect order_id, customer_id, store_id, created_at, status, payment.method as payment_method, payment.amount as amount, array_length(order_items) as items, _offset from bronze.orders\n",
            ),
            (
                "orders_latest",
                "{{ config(materialized='incremental', unique_key='order_id') }}\nselect order_id, customer_id, store_id, created_at, status, payment.method as payment_method, payment.amount as amount, array_length(order_items) as items, _offset from bronze.orders\n{% if is_incremental() %}where _offset > (select max(_offset) from {{ this }}){% endif %}\n",
            ),
        ],
    }
}

/// Writes bronze rows `from..to` of `shape`; `update` marks them new versions.
struct Bronze {
    lake: Arc<Lake>,
    sink: Option<Sink>,
    decoder: JsonDecoder,
    offset: i64,
}

impl Bronze {
    /// Rows `from..to`; `update`: they arrive after the first build (new versions, or
    /// new keys arriving with them).
    async fn append(
        &mut self,
        shape: Shape,
        from: i64,
        to: i64,
        update: bool,
    ) -> anyhow::Result<()> {
        match shape {
            Shape::Narrow => {
                append_events(&self.lake, vec![events_batch(from, to, 1 + update as i64)?]).await
            }
            Shape::Orders => {
                if self.sink.is_none() {
                    self.sink = Some(Sink::open(self.lake.clone(), "bronze", "orders", 10).await?);
                }
                let Some(sink) = self.sink.as_mut() else {
                    return Ok(());
                };
                let mut batch = RawBatch::default();
                for i in from..to {
                    let mut e = crate::ingest::order_event(i as u64);
                    if update {
                        e = e.replacen(r#""status":"OPEN""#, r#""status":"PAID""#, 1);
                    }
                    batch.push(
                        "orders",
                        0,
                        self.offset,
                        Some(0),
                        None,
                        Some(e.as_bytes()),
                        vec![],
                    );
                    self.offset += 1;
                }
                batch.freeze();
                let idx: Vec<usize> = (0..batch.len()).collect();
                let decoded =
                    self.decoder
                        .decode(&batch, &idx, chrono::Utc::now().timestamp_micros());
                let mut offsets = std::collections::BTreeMap::new();
                offsets.insert("bench:orders:0".to_string(), self.offset - 1);
                sink.commit(
                    &self.decoder.table_schema(),
                    decoded.rows,
                    &offsets,
                    serde_json::Map::new(),
                )
                .await?;
                Ok(())
            }
        }
    }
}

/// A streaming and a merge model over `rows` bronze rows of `shape`: each built with
/// `--full-refresh`, then run again after `new_rows` more (a fifth of them new versions of
/// existing keys). `deletion_vectors`: the merge model marks replaced rows in deletion
/// vectors instead of copying the files that hold them.
pub async fn incremental(
    rows: usize,
    new_rows: usize,
    shape: Shape,
    deletion_vectors: bool,
) -> anyhow::Result<()> {
    use tidepool::models::run::{RunOptions, Status};
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("sql/silver"))?;
    let models = models(shape);
    for (name, sql) in models {
        let sql = if deletion_vectors {
            sql.replace(
                "unique_key=",
                "tblproperties={'delta.enableDeletionVectors': true}, unique_key=",
            )
        } else {
            sql.to_string()
        };
        std::fs::write(dir.join(format!("sql/silver/{name}.sql")), sql)?;
    }
    let lake = Lake::open(&tidepool::config::LakeConfig {
        root: dir.join("lake").display().to_string(),
        ..Default::default()
    })?;
    let replaced = if deletion_vectors {
        "deletion vectors"
    } else {
        "file copies"
    };
    println!(
        "  incremental cost ({shape:?} rows, replaced rows by {replaced}): {rows} bronze rows, then {new_rows} new"
    );
    let mut bronze = Bronze {
        lake: lake.clone(),
        sink: None,
        decoder: JsonDecoder::new(
            Arc::new(arrow::datatypes::Schema::empty()),
            false,
            true,
            1 << 20,
        ),
        offset: 0,
    };
    let t = Instant::now();
    let chunk = if shape == Shape::Orders {
        100_000
    } else {
        500_000
    };
    let mut start = 0i64;
    while (start as usize) < rows {
        let end = (start + chunk).min(rows as i64);
        bronze.append(shape, start, end, false).await?;
        start = end;
    }
    println!("    bronze written in {:.2} s", t.elapsed().as_secs_f64());
    let project = Arc::new(tidepool::models::Project::load(
        tidepool::models::ProjectPaths::in_dir(dir),
        Default::default(),
        Default::default(),
    )?);
    let engine = tidepool::engine::Engine::new(
        lake.clone(),
        tidepool::engine::EngineOptions::default(),
        tidepool::pgcompat::PgCompat::new(Default::default()),
    )?;
    let run_one = |name: &str, full: bool| {
        let project = project.clone();
        let engine = engine.clone();
        let name = name.to_string();
        async move {
            let i = project
                .models
                .iter()
                .position(|m| m.name == name)
                .ok_or_else(|| anyhow::anyhow!("no model {name}"))?;
            let options = RunOptions {
                threads: 1,
                fail_fast: true,
                full_refresh: full,
                tests: false,
            };
            let t = Instant::now();
            let results = tidepool::models::run::run(
                project,
                engine,
                &std::collections::BTreeSet::from([i]),
                &options,
                CancellationToken::new(),
                |_| {},
            )
            .await;
            let secs = t.elapsed().as_secs_f64();
            match results.first().map(|r| (&r.status, r.rows)) {
                Some((Status::Success, rows)) => {
                    Ok::<(f64, u64), anyhow::Error>((secs, rows.unwrap_or(0)))
                }
                other => anyhow::bail!("{name} did not succeed: {other:?}"),
            }
        }
    };
    let mut full = Vec::new();
    for (m, _) in models {
        full.push(run_one(m, true).await?);
    }
    // New rows: a fifth are new versions of existing ids, the rest new ids; one commit
    // each, as a Kafka source would make them.
    let updates = (new_rows / 5) as i64;
    bronze.append(shape, 0, updates, true).await?;
    bronze
        .append(
            shape,
            rows as i64,
            rows as i64 + new_rows as i64 - updates,
            true,
        )
        .await?;
    for (k, (m, _)) in models.iter().enumerate() {
        let (secs, written) = run_one(m, false).await?;
        println!(
            "    {m:<14} full refresh {:.2} s ({} rows); after {new_rows} new rows {:.3} s ({written} rows written) = {:.1}% of the full refresh",
            full[k].0,
            full[k].1,
            secs,
            secs / full[k].0 * 100.0
        );
    }
    Ok(())
}
