//! Seeds, as in dbt: CSV files under `seeds/` loaded into lake tables that models
//! `ref()`. `seeds/<schema>/<name>.csv` is table `<schema>.<name>`; a file directly in
//! `seeds/` goes to schema `seeds` (or `config: {schema: ...}`). A YAML file beside them
//! configures each by name (`seeds: - name: x  config: {...}`): `column_types` (SQL
//! types, as in CREATE TABLE), `delimiter`, `quote_columns`, `schema`, `enabled`, `tags`;
//! the columns not typed are inferred from the values (bigint, double precision,
//! boolean, date, timestamp, else text; empty fields are NULL). Each load replaces the
//! table in one Delta commit: readers see the old rows or the new ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, cast};
use datafusion::prelude::SessionContext;

use crate::{Model, ModelFile, ModelsError, ProjectPaths};
use tidepool_engine::Engine;
use tidepool_lake::{WriteMode, WriteOptions, valid_name};

/// Schema of the seeds directly in `seeds/`.
pub const DEFAULT_SCHEMA: &str = "seeds";

/// Every `*.csv` under the seeds folder. In tidepool's layout `<seeds>/<name>.csv` is
/// schema `seeds` and `<seeds>/<schema>/<name>.csv` schema `<schema>` (deeper folders
/// are not read); in dbt's, seeds at any depth go to the target schema, their folders
/// picking their config from the `seeds:` tree. `source` is left empty: the rows are
/// read when loaded.
pub fn seed_files(paths: &ProjectPaths) -> Result<Vec<ModelFile>, ModelsError> {
    let mut out = Vec::new();
    if !paths.seeds.is_dir() {
        return Ok(out);
    }
    let mut pending = vec![(paths.seeds.clone(), Vec::<String>::new())];
    while let Some((dir, folders)) = pending.pop() {
        let schema = match (&paths.dbt, folders.first()) {
            (Some(d), _) => d.target_schema.clone(),
            (None, None) => DEFAULT_SCHEMA.to_string(),
            (None, Some(s)) => s.to_lowercase(),
        };
        if paths.dbt.is_none() && !valid_name(&schema) {
            return Err(ModelsError::Project(format!(
                "{}: a seed folder's name is its schema's name (letters, digits, _)",
                paths.relative(&dir)
            )));
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| ModelsError::Io {
            path: paths.relative(&dir),
            source: e,
        })?;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                if paths.dbt.is_some() || folders.is_empty() {
                    let mut sub = folders.clone();
                    sub.push(e.file_name().to_string_lossy().to_string());
                    pending.push((p, sub));
                }
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")) {
                let (name, path) = crate::project::table_file(paths, &p, "seed")?;
                out.push(ModelFile {
                    schema: schema.clone(),
                    folders: folders.clone(),
                    name,
                    path,
                    source: String::new(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// How a seed's file is read.
#[derive(Debug)]
struct SeedConfig {
    delimiter: u8,
    quote_columns: bool,
    /// Lowercased column name -> SQL type.
    column_types: BTreeMap<String, String>,
}

impl SeedConfig {
    fn of(m: &Model) -> Result<SeedConfig, ModelsError> {
        let raw = &m.config.raw;
        let bad = |key: &str, want: &str| {
            ModelsError::Config(format!("{}: seed config {key} must be {want}", m.file.path))
        };
        let delimiter = match raw.get("delimiter") {
            None => b',',
            Some(v) => match v.as_str().map(str::as_bytes) {
                Some([b]) => *b,
                Some(b"\\t") => b'\t',
                _ => return Err(bad("delimiter", "one character")),
            },
        };
        let quote_columns = match raw.get("quote_columns") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad("quote_columns", "true or false"))?,
        };
        let mut column_types = BTreeMap::new();
        if let Some(v) = raw.get("column_types") {
            let map = v
                .as_object()
                .ok_or_else(|| bad("column_types", "a map of column to SQL type"))?;
            for (c, t) in map {
                let t = t
                    .as_str()
                    .ok_or_else(|| bad("column_types", "a map of column to SQL type"))?;
                column_types.insert(c.to_lowercase(), t.to_string());
            }
        }
        Ok(SeedConfig {
            delimiter,
            quote_columns,
            column_types,
        })
    }
}

/// The SQL type a seed column gets from the values inferred for it.
fn inferred_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "bigint",
        DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "text",
    }
}

/// Loads seed `m` (its CSV file in `dir`) into its table; returns the rows written.
pub async fn load(engine: &Arc<Engine>, m: &Model, dir: &Path) -> Result<u64, ModelsError> {
    let config = SeedConfig::of(m)?;
    let path = dir.join(&m.file.path);
    let open = || {
        std::fs::File::open(&path).map_err(|e| ModelsError::Io {
            path: m.file.path.clone(),
            source: e,
        })
    };
    let format = Format::default()
        .with_header(true)
        .with_delimiter(config.delimiter);
    let (inferred, _) = format.infer_schema(std::io::BufReader::new(open()?), None)?;
    if let Some(c) = config.column_types.keys().find(|c| {
        !inferred
            .fields()
            .iter()
            .any(|f| f.name().to_lowercase() == **c)
    }) {
        return Err(ModelsError::Config(format!(
            "{}: column_types names {c}, which is not a column of the file",
            m.file.path
        )));
    }
    // Every field read as text, then cast with the engine's own types, so `numeric(10,2)`
    // or `varchar(2)` mean what they mean in CREATE TABLE and a bad value is a clear error.
    let text = Arc::new(Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = ReaderBuilder::new(text.clone())
        .with_format(format)
        .build(open()?)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let session = engine.session("tidepool");
    let mut columns = Vec::with_capacity(inferred.fields().len());
    for f in inferred.fields() {
        let ty = config
            .column_types
            .get(&f.name().to_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| inferred_type(f.data_type()));
        let probe = session
            .dataframe(&format!("SELECT CAST(NULL AS {ty}) AS t"))
            .await
            .map_err(|e| {
                ModelsError::Config(format!(
                    "{}: column {}: type {ty:?}: {e}",
                    m.file.path,
                    f.name()
                ))
            })?;
        let arrow_type = probe.schema().field(0).data_type().clone();
        let name = if config.quote_columns {
            f.name().clone()
        } else {
            f.name().to_lowercase()
        };
        columns.push(cast(Expr::Column(Column::new_unqualified(f.name())), arrow_type).alias(name));
    }
    let ctx = SessionContext::new_with_state(session.state());
    let rows = MemTable::try_new(text, vec![batches])?;
    let plan = ctx
        .read_table(Arc::new(rows))?
        .select(columns)?
        .logical_plan()
        .clone();
    let outcome = engine
        .lake()
        .write_plan_with(
            &m.schema,
            &m.name,
            plan,
            Arc::new(ctx.state()),
            WriteMode::Replace,
            &WriteOptions::default(),
        )
        .await?;
    Ok(outcome.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, target: &str) -> Vec<(String, String, Vec<String>)> {
        let paths = ProjectPaths::open(dir, target).unwrap();
        seed_files(&paths)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.schema, f.folders))
            .collect()
    }

    #[test]
    fn seeds_are_found_at_any_depth_in_dbt_layout_and_by_schema_folder_in_tidepools() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["seeds/top.csv", "seeds/ref/r.csv", "seeds/ref/geo/deep.csv"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "a\n1\n").unwrap();
        }
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            files(dir.path(), "analytics"),
            vec![
                ("seeds/ref/r.csv".into(), "ref".into(), s(&["ref"])),
                ("seeds/top.csv".into(), "seeds".into(), s(&[])),
            ]
        );
        std::fs::write(dir.path().join("dbt_project.yml"), "name: shop\n").unwrap();
        assert_eq!(
            files(dir.path(), "analytics"),
            vec![
                (
                    "seeds/ref/geo/deep.csv".into(),
                    "analytics".into(),
                    s(&["ref", "geo"])
                ),
                ("seeds/ref/r.csv".into(), "analytics".into(), s(&["ref"])),
                ("seeds/top.csv".into(), "analytics".into(), s(&[])),
            ]
        );
    }
}
