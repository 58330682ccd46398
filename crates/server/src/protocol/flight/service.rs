//! The Flight SQL service: each RPC authenticates its caller, then hands the work to the
//! engine session of that caller and streams Arrow batches back as they are produced.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest,
    Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, EndTransaction, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Authenticator, Caller};
use super::errors::{invalid, status, stream_status};
use super::queries::{Finished, Prepared, Queries, row_params};
use super::transactions::Transactions;
use super::{columns, ingest, metadata};
use crate::engine::{Engine, EngineError, Output, QueryControl, SplitOutput};

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

/// The Flight SQL service over one engine.
pub struct FlightSql {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    queries: Arc<Queries>,
    transactions: Transactions,
    /// `[flight] advertise`: every endpoint names this node, so that a client behind a
    /// load balancer redeems the ticket where it was issued.
    location: Option<String>,
}

/// What running a command left: a parked result stream (its ticket and schema), or a
/// command that returned no rows.
enum Ran {
    /// One ticket per stream: several when the query's partitions stream apart (one
    /// endpoint each, which clients fetch at once).
    Rows {
        tickets: Vec<Vec<u8>>,
        schema: Arc<Schema>,
    },
    Done {
        rows: u64,
    },
}

impl FlightSql {
    /// The service; tickets not fetched within `ticket_ttl` are dropped by a sweeper
    /// task that lives as long as the service.
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Authenticator>,
        ticket_ttl: std::time::Duration,
        location: Option<String>,
    ) -> Self {
        let queries = Arc::new(Queries::new(ticket_ttl));
        tokio::spawn(Queries::sweep_every(Arc::downgrade(&queries)));
        FlightSql {
            engine,
            auth,
            queries,
            transactions: Transactions::default(),
            location,
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.auth.caller(request.metadata())
    }

    /// Runs SQL text (one or more statements) for `caller`. Earlier statements run to
    /// completion; the last one's rows are parked for a DoGet.
    async fn run_sql(&self, caller: &Caller, sql: &str) -> Result<Ran, Status> {
        let session = caller.session(&self.engine);
        let mut session = session.lock().await;
        let statements = session.parse(sql).map_err(|e| status(&e))?;
        if statements.is_empty() {
            return Err(invalid("empty query"));
        }
        let n = statements.len();
        let cancel = CancellationToken::new();
        let mut rows = 0u64;
        for (i, stmt) in statements.into_iter().enumerate() {
            let control = QueryControl::new(cancel.clone(), session.timeout());
            if i + 1 == n {
                let out = session
                    .execute_split(stmt, None, &control)
                    .await
                    .map_err(|e| status(&e))?;
                return Ok(match out {
                    SplitOutput::One(out) => self.park(caller, out, cancel)?,
                    SplitOutput::Partitions(streams) => self.park_parts(caller, streams, cancel),
                });
            }
            let out = session
                .execute(stmt, None, &control)
                .await
                .map_err(|e| status(&e))?;
            rows += drain(out).await?;
        }
        Ok(Ran::Done { rows })
    }

    /// Runs a prepared statement with one set of parameter values.
    async fn run_prepared(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        params: Option<ParamValues>,
        cancel: CancellationToken,
    ) -> Result<Output, Status> {
        let caller = self
            .transactions
            .caller_in(caller.clone(), prepared.transaction.as_deref())?;
        let session = caller.session(&self.engine);
        let mut session = session.lock().await;
        let control = QueryControl::new(cancel, session.timeout());
        session
            .execute(prepared.statement.clone(), params, &control)
            .await
            .map_err(|e| status(&e))
    }

    fn park(&self, caller: &Caller, out: Output, cancel: CancellationToken) -> Result<Ran, Status> {
        Ok(match out {
            // COPY TO STDOUT over Flight: its rows, as Arrow (the format is the wire's).
            Output::Rows { stream, .. } | Output::CopyOut { stream, .. } => {
                let schema = stream.schema();
                let tickets = self.queries.park(&caller.user, vec![stream], cancel);
                Ran::Rows { tickets, schema }
            }
            Output::Command(tag) => Ran::Done {
                rows: tag.rows.unwrap_or(0),
            },
            Output::CopyIn(_) => return Err(copy_from_stdin()),
        })
    }

    /// Parks the partition streams of one query, each under its own ticket; cancelling
    /// one cancels them all.
    fn park_parts(
        &self,
        caller: &Caller,
        streams: Vec<SendableRecordBatchStream>,
        cancel: CancellationToken,
    ) -> Ran {
        let schema = match streams.first() {
            Some(s) => s.schema(),
            None => Arc::new(Schema::empty()),
        };
        let tickets = self.queries.park(&caller.user, streams, cancel);
        Ran::Rows { tickets, schema }
    }

    /// An endpoint redeeming `ticket`, at this node's advertised location if it has one.
    fn endpoint(&self, ticket: Vec<u8>) -> FlightEndpoint {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        match &self.location {
            Some(uri) => endpoint.with_location(uri.clone()),
            None => endpoint,
        }
    }

    /// The FlightInfo of a command that ran: an endpoint per ticket of its rows (unordered
    /// when several), or none when it returned no rows.
    fn ran_info(
        &self,
        ran: Ran,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = match ran {
            Ran::Rows { tickets, schema } => {
                let schema = columns::client_schema(&schema).unwrap_or(schema);
                let mut info = FlightInfo::new()
                    .try_with_schema(&schema)
                    .map_err(|e| Status::internal(e.to_string()))?;
                for ticket in tickets {
                    let ticket = TicketStatementQuery {
                        statement_handle: ticket.into(),
                    };
                    info = info.with_endpoint(self.endpoint(ticket.as_any().encode_to_vec()));
                }
                info
            }
            Ran::Done { .. } => FlightInfo::new()
                .try_with_schema(&Schema::empty())
                .map_err(|e| Status::internal(e.to_string()))?,
        };
        Ok(Response::new(info.with_descriptor(descriptor)))
    }

    /// The FlightInfo of a metadata command for an authenticated caller: its ticket is
    /// the command itself.
    fn metadata_info(
        &self,
        cmd: impl ProstMessageExt,
        schema: &Schema,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let descriptor = request.into_inner();
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(self.endpoint(cmd.as_any().encode_to_vec()))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Every cancellable ticket of a FlightInfo is cancelled; true if any was running.
    fn cancel_info(&self, caller: &Caller, info: &FlightInfo) -> bool {
        let mut any = false;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any_msg) = Any::decode(&*ticket.ticket) else {
                continue;
            };
            let Ok(Some(t)) = any_msg.unpack::<TicketStatementQuery>() else {
                continue;
            };
            if self.queries.cancel(&t.statement_handle, &caller.user) {
                tracing::info!(user = %caller.user, "flight: query cancelled by client request");
                any = true;
            }
        }
        any
    }
}

/// Reads a row result to its end; returns the number of rows (or the command's count).
async fn drain(out: Output) -> Result<u64, Status> {
    match out {
        Output::Rows { mut stream, .. } => {
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                rows += batch.map_err(stream_status)?.num_rows() as u64;
            }
            Ok(rows)
        }
        Output::Command(tag) => Ok(tag.rows.unwrap_or(0)),
        Output::CopyOut { mut stream, .. } => {
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                rows += batch.map_err(stream_status)?.num_rows() as u64;
            }
            Ok(rows)
        }
        Output::CopyIn(_) => Err(copy_from_stdin()),
    }
}

/// COPY FROM STDIN has no data channel over Flight SQL (dropping the COPY fails it: nothing
/// is written).
fn copy_from_stdin() -> Status {
    status(&EngineError::NotSupported(
        "COPY FROM STDIN over Flight SQL (COPY over the Postgres protocol, or INSERT)".into(),
    ))
}

/// Streams result batches as Flight data, batch by batch; `finished` is dropped (and the
/// query unlisted) when the stream ends or the client goes away. (Encoding on a task of
/// its own, ahead of the connection task, measured no faster on 2 cores.)
fn encode(stream: SendableRecordBatchStream, finished: Option<Finished>) -> DoGetStream {
    let schema = stream.schema();
    let client = columns::client_schema(&schema);
    let out_schema = client.clone().unwrap_or(schema);
    let batches = stream.map(move |b| {
        let b = b.map_err(|e| FlightError::Tonic(Box::new(stream_status(e))))?;
        match &client {
            Some(s) => columns::convert(&b, s).map_err(FlightError::Arrow),
            None => Ok(b),
        }
    });
    let data = FlightDataEncoderBuilder::new()
        .with_schema(out_schema)
        .build(batches)
        .map(move |item| {
            let _listed = &finished;
            item.map_err(flight_status)
        });
    Box::pin(data)
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        FlightError::Arrow(e) => status(&EngineError::from(
            datafusion::error::DataFusionError::from(e),
        )),
        other => Status::internal(other.to_string()),
    }
}

/// One batch as a Flight stream (metadata answers).
fn one_batch(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter([Ok(batch)]))
        .map_err(flight_status);
    Response::new(Box::pin(data))
}

fn arrow_status(e: datafusion::arrow::error::ArrowError) -> Status {
    Status::internal(e.to_string())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow_status)?;
    Ok(bytes)
}

/// Parameter batches sent with a DoPut, concatenated; `None` when none were sent.
async fn read_params(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, Status> {
    // The first message carries the command; it may hold no Arrow data at all.
    let data = request
        .into_inner()
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
        .map_err(|s| FlightError::Tonic(Box::new(s)));
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .map_err(|e| invalid(format!("cannot read the bound parameters: {e}")))?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = datafusion::arrow::compute::concat_batches(&first.schema(), &batches)
        .map_err(|e| invalid(format!("cannot read the bound parameters: {e}")))?;
    Ok(Some(batch))
}

/// The parameter sets of a prepared statement: one per bound row, or none.
fn param_sets(
    prepared: &Prepared,
    bound: Option<&RecordBatch>,
) -> Result<Vec<Option<ParamValues>>, Status> {
    let expected = &prepared.described.params;
    match bound {
        None | Some(_) if expected.is_empty() => Ok(vec![None]),
        None => Err(invalid(format!(
            "the statement takes {} parameter(s); bind them before executing",
            expected.len()
        ))),
        Some(batch) => (0..batch.num_rows())
            .map(|row| row_params(batch, row, expected).map(Some))
            .collect(),
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = self.auth.handshake(request.metadata(), &self.engine)?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream::iter([Ok(reply)])));
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("cannot encode the token"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self
            .transactions
            .caller_in(self.caller(&request)?, query.transaction_id.as_deref())?;
        let ran = self.run_sql(&caller, &query.query).await?;
        self.ran_info(ran, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let prepared = self
            .queries
            .prepared(&cmd.prepared_statement_handle, &caller.user)?;
        let bound = prepared.params.lock().clone();
        let mut sets = param_sets(&prepared, bound.as_ref())?;
        if sets.len() != 1 {
            return Err(invalid(format!(
                "a query runs with one row of parameters; {} were bound",
                sets.len()
            )));
        }
        let params = sets.pop().flatten();
        let cancel = CancellationToken::new();
        let out = self
            .run_prepared(&caller, &prepared, params, cancel.clone())
            .await?;
        let ran = self.park(&caller, out, cancel)?;
        self.ran_info(ran, request.into_inner())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::sql_info()?.schema();
        self.metadata_info(query, &schema, request)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(query, &metadata::primary_keys_schema(), request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::xdbc_info()?.schema();
        self.metadata_info(query, &schema, request)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let (stream, finished) = self.queries.take(&ticket.statement_handle, &caller.user)?;
        Ok(Response::new(encode(stream, Some(finished))))
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(one_batch(metadata::catalogs()?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let batch = metadata::db_schemas(&self.engine, &caller.user, query).await?;
        Ok(one_batch(batch))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let batch = metadata::tables(&self.engine, &caller.user, query).await?;
        Ok(one_batch(batch))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let mut b = query.into_builder();
        for t in metadata::TABLE_TYPES {
            b.append(t);
        }
        Ok(one_batch(b.build().map_err(flight_status)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let batch = query
            .into_builder(metadata::sql_info()?)
            .build()
            .map_err(flight_status)?;
        Ok(one_batch(batch))
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(one_batch(RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(one_batch(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(one_batch(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(one_batch(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let batch = query
            .into_builder(metadata::xdbc_info()?)
            .build()
            .map_err(flight_status)?;
        Ok(one_batch(batch))
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self
            .transactions
            .caller_in(self.caller(&request)?, ticket.transaction_id.as_deref())?;
        let rows = match self.run_sql(&caller, &ticket.query).await? {
            Ran::Done { rows } => rows,
            Ran::Rows { tickets, .. } => {
                let mut rows = 0;
                for ticket in tickets {
                    let (stream, _finished) = self.queries.take(&ticket, &caller.user)?;
                    rows += drain(Output::Rows {
                        stream,
                        tag: "SELECT",
                    })
                    .await?;
                }
                rows
            }
        };
        Ok(rows as i64)
    }

    async fn do_put_statement_ingest(
        &self,
        ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self
            .transactions
            .caller_in(self.caller(&request)?, ticket.transaction_id.as_deref())?;
        let target = ingest::target(&ticket)?;
        let rows = ingest::rows(request).await?;
        let session = caller.session(&self.engine);
        let mut session = session.lock().await;
        let control = QueryControl::new(CancellationToken::new(), session.timeout());
        let written = session
            .ingest(&target, rows, &control)
            .await
            .map_err(|e| status(&e))?;
        Ok(written as i64)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let prepared = self
            .queries
            .prepared(&query.prepared_statement_handle, &caller.user)?;
        let bound = read_params(request).await?;
        *prepared.params.lock() = bound;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request)?;
        let prepared = self
            .queries
            .prepared(&query.prepared_statement_handle, &caller.user)?;
        let bound = match read_params(request).await? {
            Some(b) => Some(b),
            None => prepared.params.lock().clone(),
        };
        let mut rows = 0u64;
        for params in param_sets(&prepared, bound.as_ref())? {
            let out = self
                .run_prepared(&caller, &prepared, params, CancellationToken::new())
                .await?;
            rows += drain(out).await?;
        }
        Ok(rows as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self
            .transactions
            .caller_in(self.caller(&request)?, query.transaction_id.as_deref())?;
        let session = caller.session(&self.engine);
        let mut session = session.lock().await;
        let sql = crate::engine::question_placeholders(&query.query);
        let sql = sql.as_deref().unwrap_or(&query.query);
        let mut statements = session.parse(sql).map_err(|e| status(&e))?;
        if statements.len() != 1 {
            return Err(invalid(if statements.is_empty() {
                "empty query".to_string()
            } else {
                "cannot insert multiple commands into a prepared statement".to_string()
            }));
        }
        let statement = statements.remove(0);
        let described = session.describe(&statement).await.map_err(|e| status(&e))?;
        drop(session);
        let dataset = match &described.schema {
            Some(s) => columns::client_schema(s).unwrap_or_else(|| s.clone()),
            None => Arc::new(Schema::empty()),
        };
        let parameters = Schema::new(
            described
                .params
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let handle = self.queries.prepare(Prepared {
            user: caller.user.clone(),
            statement,
            described,
            params: parking_lot::Mutex::new(None),
            transaction: query.transaction_id.map(|t| t.to_vec()),
        });
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        self.queries
            .close(&query.prepared_statement_handle, &caller.user)
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let caller = self.caller(&request)?;
        let id = self.transactions.begin(&self.engine, &caller.user).await?;
        Ok(ActionBeginTransactionResult {
            transaction_id: id.into(),
        })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        let commit = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => true,
            Ok(EndTransaction::Rollback) => false,
            _ => return Err(invalid("EndTransaction needs COMMIT or ROLLBACK")),
        };
        self.transactions
            .end(&query.transaction_id, &caller.user, commit)
            .await
    }

    async fn do_action_begin_savepoint(
        &self,
        query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        let caller = self.caller(&request)?;
        let id = self
            .transactions
            .savepoint(&query.transaction_id, &caller.user)
            .await?;
        Ok(ActionBeginSavepointResult {
            savepoint_id: id.into(),
        })
    }

    async fn do_action_end_savepoint(
        &self,
        query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        // EndSavepoint (not re-exported by arrow-flight): 1 RELEASE, 2 ROLLBACK.
        let release = match query.action {
            1 => true,
            2 => false,
            _ => return Err(invalid("EndSavepoint needs RELEASE or ROLLBACK")),
        };
        self.transactions
            .end_savepoint(&query.savepoint_id, &caller.user, release)
            .await
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request)?;
        let info = FlightInfo::decode(&*query.info)
            .map_err(|e| invalid(format!("malformed FlightInfo: {e}")))?;
        // CancelResult: 1 cancelled, 3 not cancellable (unknown or finished).
        let result = if self.cancel_info(&caller, &info) {
            1
        } else {
            3
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request)?;
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(invalid(format!("unknown action {:?}", action.r#type)));
        }
        let cancel = CancelFlightInfoRequest::decode(&*action.body)
            .map_err(|e| invalid(format!("malformed CancelFlightInfoRequest: {e}")))?;
        let info = cancel.info.unwrap_or_default();
        // CancelStatus: 1 cancelled, 3 not cancellable (unknown or finished).
        let status = if self.cancel_info(&caller, &info) {
            1
        } else {
            3
        };
        let body = CancelFlightInfoResult { status }.encode_to_vec();
        Ok(Response::new(Box::pin(stream::iter([Ok(
            arrow_flight::Result { body: body.into() },
        )]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
