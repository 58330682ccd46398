//! The `ctid` system column of lake tables.
//!
//! PostgreSQL rows carry a tuple id, `ctid`, that `SELECT ctid, * FROM t` shows and
//! `DELETE ... WHERE ctid IN (...)` addresses; DuckDB's postgres extension deletes and
//! updates through it. A lake table's scan has no such column, so a statement that names
//! `ctid` reads the table under the name `t#ctid` (the statement rewrite in
//! tidepool-pgcompat renames the relation, keeping its name as the alias): [`provider`]
//! gives that relation the table's columns plus `ctid`, text in PostgreSQL's `(block,offset)`
//! form, computed from each row's data file and position in it
//! ([`tidepool_lake::tids`]). The scan reads every row in file order (no filter is pushed
//! into it; positions are counted), which is what a statement selecting `ctid` needs.
//! Authorization and row-level security see the table itself ([`Touches`]). DML on
//! `t#ctid` deletes and updates by tid (`session::dml`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, PlanProperties,
    SendableRecordBatchStream,
};
use deltalake::DeltaTable;
use futures::StreamExt;
use tidepool_lake::Lake;
use tidepool_lake::tids::{DeletedRows, FileTids};

use crate::authz::Touch;
use crate::authz::guarded::Touches;

/// The suffix of a relation name that reads the table with its `ctid`.
pub const RELATION_SUFFIX: &str = crate::names::TUPLE_IDS_SUFFIX;
/// The column's name.
pub const COLUMN: &str = "ctid";
/// Field metadata marking a text column as PostgreSQL's `tid` type on the wire.
pub const PG_TYPE_KEY: &str = "tidepool.pg_type";
pub const TID: &str = "tid";

/// The column the Delta scan adds with each row's data file.
const FILE_COLUMN: &str = "__tidepool_ctid_file";

/// The table `name` names when it reads with `ctid` (`t#ctid` -> `t`).
pub fn base_name(name: &str) -> Option<&str> {
    crate::names::read_with_tuple_ids(name)
}

/// The `ctid` field.
pub fn field() -> Field {
    Field::new(COLUMN, DataType::Utf8, false)
        .with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), TID.to_string())]))
}

/// Whether `f` holds tids.
pub fn is_tid(f: &Field) -> bool {
    f.metadata().get(PG_TYPE_KEY).is_some_and(|t| t == TID)
}

/// `schema.table` (the Delta table `t`) with its `ctid` column last.
pub async fn provider(
    lake: Arc<Lake>,
    schema: &str,
    table: &str,
    t: &DeltaTable,
) -> Result<Arc<dyn TableProvider>> {
    let inner: Arc<dyn TableProvider> = t.table_provider().with_file_column(FILE_COLUMN).await?;
    let inner_schema = inner.schema();
    let file = inner_schema.index_of(FILE_COLUMN)?;
    let mut fields: Vec<Field> = inner_schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != file)
        .map(|(_, f)| f.as_ref().clone())
        .collect();
    fields.push(field());
    let deleted = DeletedRows::of(t)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let provider = Arc::new(CtidTable {
        inner,
        schema: Arc::new(Schema::new(fields)),
        file,
        files: Arc::new(Files {
            lake,
            schema: schema.to_string(),
            table: table.to_string(),
            root: t.table_url().to_string(),
            deleted,
        }),
    });
    Ok(Touches::wrap(
        provider,
        vec![Touch::Read {
            schema: schema.to_string(),
            table: table.to_string(),
        }],
    ))
}

/// What numbering a scan's rows needs.
#[derive(Debug)]
struct Files {
    lake: Arc<Lake>,
    schema: String,
    table: String,
    /// The table's root URL, stripped from the scan's file column.
    root: String,
    deleted: DeletedRows,
}

impl Files {
    /// The path of a data file relative to the table's root.
    fn relative<'a>(&self, path: &'a str) -> &'a str {
        path.strip_prefix(self.root.as_str())
            .unwrap_or(path)
            .trim_start_matches('/')
    }
}

/// A lake table read with its `ctid`.
#[derive(Debug)]
struct CtidTable {
    /// delta-rs' provider, with the file column.
    inner: Arc<dyn TableProvider>,
    /// The table's columns and `ctid`.
    schema: SchemaRef,
    /// The file column's place in `inner`'s schema.
    file: usize,
    files: Arc<Files>,
}

#[async_trait]
impl TableProvider for CtidTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Every row is read and counted; filters apply above the scan.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctid = self.schema.fields().len() - 1;
        let asked: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // Our columns -> the inner scan's (the file column left out of ours).
        let inner_index = |i: usize| if i < self.file { i } else { i + 1 };
        let mut read: Vec<usize> = asked
            .iter()
            .filter(|&&i| i != ctid)
            .map(|&i| inner_index(i))
            .collect();
        read.push(self.file);
        let mut outputs = Vec::with_capacity(asked.len());
        let mut next = 0;
        for &i in &asked {
            if i == ctid {
                outputs.push(Output::Ctid);
            } else {
                outputs.push(Output::Column(next));
                next += 1;
            }
        }
        // One partition: each file's rows come in order, so positions can be counted.
        let single = match state.as_any().downcast_ref::<SessionState>() {
            Some(s) => {
                let mut config = s.config().clone();
                config.options_mut().execution.target_partitions = 1;
                SessionStateBuilder::new_from_existing(s.clone())
                    .with_config(config)
                    .build()
            }
            None => {
                return Err(DataFusionError::Internal(
                    "ctid scan outside a DataFusion session".into(),
                ));
            }
        };
        let input = self.inner.scan(&single, Some(&read), &[], None).await?;
        let fields: Vec<Field> = asked
            .iter()
            .map(|&i| self.schema.field(i).clone())
            .collect();
        Ok(Arc::new(CtidExec::new(
            input,
            Arc::new(Schema::new(fields)),
            outputs,
            self.files.clone(),
        )))
    }
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// A column of the inner scan's batch.
    Column(usize),
    Ctid,
}

/// Adds `ctid` to the rows of a single-partition Delta scan and drops its file column
/// (the last of its input's).
#[derive(Debug)]
struct CtidExec {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    outputs: Vec<Output>,
    files: Arc<Files>,
    properties: Arc<PlanProperties>,
}

impl CtidExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        outputs: Vec<Output>,
        files: Arc<Files>,
    ) -> CtidExec {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        CtidExec {
            input,
            schema,
            outputs,
            files,
            properties,
        }
    }
}

impl DisplayAs for CtidExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CtidExec: {}.{}", self.files.schema, self.files.table)
    }
}

impl ExecutionPlan for CtidExec {
    fn name(&self) -> &str {
        "CtidExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(CtidExec::new(
                input,
                self.schema.clone(),
                self.outputs.clone(),
                self.files.clone(),
            ))),
            _ => datafusion::common::internal_err!("CtidExec takes one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 || self.input.properties().partitioning.partition_count() != 1 {
            return datafusion::common::internal_err!(
                "CtidExec reads one partition, asked for {partition} of {}",
                self.input.properties().partitioning.partition_count()
            );
        }
        let input = self.input.execute(0, context)?;
        let mut numbering = Numbering {
            files: self.files.clone(),
            cursors: HashMap::new(),
        };
        let schema = self.schema.clone();
        let outputs = self.outputs.clone();
        let stream = input.map(move |batch| {
            let batch = batch?;
            let file = batch.column(batch.num_columns() - 1);
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(outputs.len());
            let mut tids: Option<ArrayRef> = None;
            for o in &outputs {
                match o {
                    Output::Column(i) => columns.push(batch.column(*i).clone()),
                    Output::Ctid => {
                        if tids.is_none() {
                            tids = Some(numbering.tids(file)?);
                        }
                        columns.extend(tids.clone());
                    }
                }
            }
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// A scan's count of rows per file.
struct Numbering {
    files: Arc<Files>,
    /// Per file (as the scan names it): how its rows are named, its path relative to
    /// the table, and the next position to look at.
    cursors: HashMap<String, (FileTids, String, u64)>,
}

impl Numbering {
    /// The tids of a batch's rows, given their file column.
    fn tids(&mut self, file: &ArrayRef) -> Result<ArrayRef> {
        let file = datafusion::arrow::compute::cast(file, &DataType::Utf8)?;
        let file = file.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(file.len(), file.len() * 12);
        for row in 0..file.len() {
            if file.is_null(row) {
                return datafusion::common::internal_err!("ctid scan: a row without its file");
            }
            let name = file.value(row);
            if !self.cursors.contains_key(name) {
                let relative = self.files.relative(name).to_string();
                let number = self
                    .files
                    .lake
                    .tid_file(&self.files.schema, &self.files.table, &relative)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                self.cursors.insert(name.to_string(), (number, relative, 0));
            }
            let Some((tids, relative, next)) = self.cursors.get_mut(name) else {
                continue;
            };
            let position = self.files.deleted.live_from(relative, *next);
            *next = position + 1;
            let Some(tid) = tids.tid(position) else {
                return Err(DataFusionError::Execution(format!(
                    "ctid: data file {relative} has more rows than a tid can address"
                )));
            };
            out.append_value(tid.to_string());
        }
        Ok(Arc::new(out.finish()))
    }
}
