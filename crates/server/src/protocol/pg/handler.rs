//! Simple and extended query handling for one Postgres connection.
//!
//! Each connection owns one engine [`Session`]. Statements run under a cancellation token
//! that a CancelRequest (from another socket) fires, and under the statement timeout.
//! Results are encoded to DataRows batch by batch as the client reads them.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::sql::parser::Statement;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::copy;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_describe_response, send_execution_response,
    send_query_response, send_ready_for_query,
};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, METADATA_USER, PgWireConnectionState, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Describe, Execute, Sync as PgSync, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::types::format::FormatOptions;
use tokio_util::sync::CancellationToken;

use super::ahead;
use super::copy_out;
use super::errors::to_pg;
use super::json_columns;
use super::shared::{Cancellable, PgShared};
use super::text_rows;
use super::tid_columns;
use crate::engine::copy::{CopyFormat, CopyInData};
use crate::engine::{Described, EngineError, Output, QueryControl, Session, TxEffect, TxStatus};

/// The engine session of a connection, created at its first statement.
pub type SessionCell = tokio::sync::Mutex<Option<Session>>;

/// State of one connection.
pub struct ConnState {
    pub(super) shared: Arc<PgShared>,
    pub(super) session: Arc<SessionCell>,
    pub(super) parser: Arc<ConnParser>,
    current: parking_lot::Mutex<CancellationToken>,
    registered: parking_lot::Mutex<Option<(i32, bytes::Bytes)>>,
    /// The COPY FROM STDIN receiving data, if one is.
    pub(super) copy_in: tokio::sync::Mutex<Option<CopyInProgress>>,
    /// The rows of a COPY TO STDOUT whose placeholder response is being sent.
    copy_out: parking_lot::Mutex<Option<copy_out::CopyOut>>,
}

/// A COPY FROM STDIN between CopyInResponse and CopyDone: where the data goes, and the
/// task writing it (it holds the session until the rows are written).
pub(super) struct CopyInProgress {
    pub(super) data: Option<CopyInData>,
    pub(super) task: tokio::task::JoinHandle<Result<u64, EngineError>>,
}

impl ConnState {
    pub fn new(shared: Arc<PgShared>) -> Arc<ConnState> {
        let session = Arc::new(SessionCell::new(None));
        Arc::new(ConnState {
            parser: Arc::new(ConnParser {
                shared: shared.clone(),
                session: session.clone(),
            }),
            shared,
            session,
            current: parking_lot::Mutex::new(CancellationToken::new()),
            registered: parking_lot::Mutex::new(None),
            copy_in: tokio::sync::Mutex::new(None),
            copy_out: parking_lot::Mutex::new(None),
        })
    }

    /// Turns a COPY's output into the response pgwire sends (CopyInResponse), or a
    /// placeholder for the rows [`send_copy_out`] sends; any other output as
    /// [`to_response`].
    async fn respond(
        self: &Arc<Self>,
        out: Output,
        format: &Format,
        options: Arc<FormatOptions>,
        token: CancellationToken,
        timeout: Option<std::time::Duration>,
    ) -> PgWireResult<Response> {
        match out {
            Output::CopyOut {
                stream,
                options: copy,
            } => {
                let encoded = copy_out::encode(stream, &copy, options)?;
                *self.copy_out.lock() = Some(encoded);
                Ok(Response::CopyOut(CopyResponse::new(0, 0, stream::empty())))
            }
            Output::CopyIn(c) => {
                let format = i8::from(c.options.format == CopyFormat::Binary);
                let columns = c.columns;
                let session = self.session.clone();
                let insert = c.insert;
                let task = tokio::spawn(async move {
                    // Waits for the statement that started the COPY to let go of it.
                    let mut guard = session.lock().await;
                    let Some(s) = guard.as_mut() else {
                        return Err(EngineError::ShuttingDown);
                    };
                    let control = QueryControl::new(token, timeout);
                    s.finish_copy_in(insert, &control).await
                });
                *self.copy_in.lock().await = Some(CopyInProgress {
                    data: Some(c.data),
                    task,
                });
                Ok(Response::CopyIn(CopyResponse::new(
                    format,
                    columns,
                    stream::empty(),
                )))
            }
            other => to_response(other, format, options),
        }
    }

    /// Fires the cancel token of the statement running now.
    pub fn cancel_current(&self) {
        self.current.lock().cancel();
    }

    /// A fresh token for the next statement; makes this connection cancellable.
    fn begin_statement<C: ClientInfo>(self: &Arc<Self>, client: &C) -> CancellationToken {
        let mut reg = self.registered.lock();
        if reg.is_none() {
            let (pid, key) = client.pid_and_secret_key();
            let key = key.to_bytes();
            let conn: Weak<dyn Cancellable> = Arc::downgrade(self) as Weak<ConnState>;
            self.shared.cancels.register(pid, key.clone(), conn);
            *reg = Some((pid, key));
        }
        let token = CancellationToken::new();
        *self.current.lock() = token.clone();
        token
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        if let Some((pid, key)) = self.registered.lock().take() {
            self.shared.cancels.unregister(pid, &key);
        }
    }
}

/// Locks the connection's session, creating it for the connected user if needed.
async fn session<'a, C: ClientInfo>(
    cell: &'a SessionCell,
    shared: &PgShared,
    client: &C,
) -> tokio::sync::MutexGuard<'a, Option<Session>> {
    let mut guard = cell.lock().await;
    if guard.is_none() {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            // Startup always names a user; none would be no user at all, never the server.
            .unwrap_or_default();
        let mut s = shared.engine.session(&user);
        for (name, value) in startup_settings(client.metadata()) {
            if let Err(e) = s.set(&name, &value) {
                tracing::warn!(%user, setting = %name, error = %e, "startup setting ignored");
            }
        }
        *guard = Some(s);
    }
    guard
}

/// The settings a client gave at startup: its parameters other than the connection's
/// identity, then each `-c name=value` / `--name=value` of `options` (as `PGOPTIONS`
/// sends them), in that order as PostgreSQL applies them.
fn startup_settings(metadata: &std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];
    let mut out: Vec<(String, String)> = metadata
        .iter()
        .filter(|(k, _)| !NOT_SETTINGS.contains(&k.as_str()) && !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.sort();
    if let Some(options) = metadata.get("options") {
        out.extend(command_line_settings(options));
    }
    out
}

/// `-c a=1 --b=2 -cc=3` into (name, value) pairs; a backslash escapes the next
/// character (a space inside a value).
fn command_line_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let (pair, dashed) = match w.strip_prefix("--") {
            Some(rest) => (Some(rest.to_string()), true),
            None if w == "-c" => (words.next(), false),
            None => (w.strip_prefix("-c").map(str::to_string), false),
        };
        if let Some((name, value)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            let name = if dashed {
                name.replace('-', "_")
            } else {
                name.to_string()
            };
            out.push((name, value.to_string()));
        }
    }
    out
}

fn pg_type(t: &Option<DataType>) -> Type {
    match t {
        Some(t) => arrow_pg::datatypes::into_pg_type(t).unwrap_or(Type::TEXT),
        None => Type::TEXT,
    }
}

fn fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Vec<FieldInfo>> {
    // Repeated result names carry a hidden suffix inside the engine.
    let mut out = match tidepool_engine::names::display_schema(schema) {
        Some(shown) => {
            arrow_pg::datatypes::arrow_schema_to_pg_fields(&shown, format, Some(options))
        }
        None => arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, Some(options)),
    }?;
    for (i, f) in schema.fields().iter().enumerate() {
        let Some(old) = out.get(i) else { continue };
        // A lake table's column: its table's oid and its number (JDBC's getTableName,
        // isNullable; Npgsql's GetSchemaTable).
        let origin = |key: &str| f.metadata().get(key).and_then(|v| v.parse::<i64>().ok());
        if let (Some(oid), Some(attnum)) = (
            origin(tidepool_engine::origins::TABLE_OID_KEY),
            origin(tidepool_engine::origins::ATTNUM_KEY),
        ) {
            out[i] = FieldInfo::new(
                old.name().to_string(),
                Some(oid as i32),
                Some(attnum as i16),
                old.datatype().clone(),
                old.format(),
            )
            .with_format_options(old.format_options().clone());
        }
        let Some(old) = out.get(i) else { continue };
        if crate::engine::ctid::is_tid(f) {
            out[i] = retyped(old, Type::TID, -1);
            continue;
        }
        // int2vector / oidvector catalog columns go out as their text, typed as
        // PostgreSQL types them (psqlODBC parses `indkey` by its type).
        if let Some(kind) = f
            .metadata()
            .get(crate::pgcompat::catalog_arrays::OIDVECTOR_KEY)
        {
            let t = if kind == "int2vector" {
                Type::INT2_VECTOR
            } else {
                Type::OID_VECTOR
            };
            out[i] = retyped(old, t, -1);
            continue;
        }
        // Type modifiers as PostgreSQL sends them: numeric(p,s), varchar(n) / char(n)
        // (JDBC's getPrecision/getScale, ODBC's SQLDescribeCol read them).
        if let Some((oid, typmod, _)) = crate::pgcompat::column_type(f)
            && typmod >= 0
        {
            let t = match oid {
                1042 => Type::BPCHAR,
                1043 => Type::VARCHAR,
                _ => old.datatype().clone(),
            };
            out[i] = retyped(old, t, typmod);
        }
    }
    Ok(out)
}

/// `field` with another type and type modifier.
fn retyped(field: &FieldInfo, t: Type, typmod: i32) -> FieldInfo {
    FieldInfo::new(
        field.name().to_string(),
        field.table_id(),
        field.column_id(),
        t,
        field.format(),
    )
    .with_format_options(field.format_options().clone())
    .with_type_modifier(typmod)
}

/// Turns an engine output into a pgwire response whose rows are encoded lazily.
fn to_response(
    out: Output,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    match out {
        Output::Command(c) => {
            let mut tag = if c.tag == "INSERT 0" {
                Tag::new("INSERT").with_oid(0)
            } else {
                Tag::new(&c.tag)
            };
            if let Some(rows) = c.rows {
                tag = tag.with_rows(rows as usize);
            }
            Ok(match c.tx {
                TxEffect::Begin => Response::TransactionStart(tag),
                TxEffect::End => Response::TransactionEnd(tag),
                TxEffect::None => Response::Execution(tag),
            })
        }
        Output::CopyOut { .. } | Output::CopyIn(_) => Err(PgWireError::ApiError(
            "a COPY's output goes through ConnState::respond".into(),
        )),
        Output::Rows { stream, tag } => {
            let schema = json_columns::client_schema(&stream.schema());
            let iso = options.date_style.trim_start().starts_with("ISO");
            let fields = Arc::new(fields(&schema, format, options)?);
            let encoder_fields = fields.clone();
            let all_text = fields
                .iter()
                .all(|f| f.format() == pgwire::api::results::FieldFormat::Text);
            // Tuple ids asked for in binary go out as tidsend's bytes.
            let binary_tids: Vec<usize> = tid_columns::tid_columns(&schema)
                .into_iter()
                .filter(|&i| {
                    fields
                        .get(i)
                        .is_some_and(|f| f.format() == pgwire::api::results::FieldFormat::Binary)
                })
                .collect();
            let rows = ahead::encode_ahead(stream, move |b| {
                Ok(if all_text && text_rows::applies(&b, iso) {
                    text_rows::encode(&b).into_iter().map(Ok).collect()
                } else {
                    let b = tid_columns::to_binary(b, &binary_tids)
                        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                    arrow_pg::datatypes::encode_recordbatch(encoder_fields.clone(), b)
                        .collect::<Vec<_>>()
                })
            })
            .flat_map(|rows| {
                stream::iter(match rows {
                    Ok(rows) => rows,
                    Err(e) => vec![Err(e)],
                })
            });
            let mut response = QueryResponse::new(fields, rows);
            response.set_command_tag(tag);
            Ok(Response::Query(response))
        }
    }
}

/// Collects a row response fully (used for all but the last statement of a multi-statement
/// query, so a later statement cannot change what an earlier one returns).
async fn materialize(out: Output) -> Result<Output, EngineError> {
    match out {
        Output::Rows { stream, tag } => {
            let schema = stream.schema();
            let batches: Vec<_> = stream.collect::<Vec<_>>().await;
            let batches = batches
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(EngineError::from)?;
            let s = stream::iter(batches.into_iter().map(Ok));
            Ok(Output::Rows {
                stream: Box::pin(
                    datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, s),
                ),
                tag,
            })
        }
        other => Ok(other),
    }
}

/// The handlers of one connection; pgwire holds them behind an `Arc`.
pub struct ConnHandler(pub Arc<ConnState>);

#[async_trait]
impl SimpleQueryHandler for ConnHandler {
    /// Runs a Query message and ends it with ReadyForQuery carrying the session's own
    /// transaction state. pgwire's default derives that state from the kinds of the
    /// responses, which cannot express a ROLLBACK TO SAVEPOINT taking a failed block back
    /// to a good one (psqlODBC recovers from errors that way).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let empty = query.query.chars().all(|c| c == ';' || c.is_whitespace());
        let sent = if empty {
            send_responses(client, &self.0, vec![Response::EmptyQuery]).await
        } else {
            match SimpleQueryHandler::do_query(self, client, &query.query).await {
                Ok(responses) => send_responses(client, &self.0, responses).await,
                Err(e) => Err(e),
            }
        };
        match sent {
            // The statement, or a row while streaming, failed: pgwire reports it
            // (ErrorResponse, ReadyForQuery) and the block fails.
            Err(e) => {
                self.session_status(client, true).await;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                Err(e)
            }
            Ok(true) => {
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                Ok(())
            }
            Ok(false) => {
                let status = self.session_status(client, false).await;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                send_ready_for_query(client, status).await
            }
        }
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let this = &self.0;
        let token = this.begin_statement(client);
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let mut guard = session(&this.session, &this.shared, client).await;
        let Some(session) = guard.as_mut() else {
            return Err(PgWireError::ApiError("no session".into()));
        };
        let statements = match session.parse(query) {
            Ok(s) => s,
            Err(e) => {
                session.fail_transaction();
                return Err(to_pg(&e));
            }
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let n = statements.len();
        let mut responses = Vec::with_capacity(n);
        for (i, stmt) in statements.into_iter().enumerate() {
            let span = tracing::debug_span!("statement", sql = %stmt);
            let _enter = span.enter();
            let control = QueryControl::new(token.clone(), session.timeout());
            let result = match session.execute(stmt, None, &control).await {
                Ok(out) if i + 1 < n => materialize(out).await,
                other => other,
            };
            match result {
                Ok(out) => {
                    let copy = matches!(out, Output::CopyIn(_));
                    responses.push(
                        this.respond(
                            out,
                            &Format::UnifiedText,
                            options.clone(),
                            token.clone(),
                            session.timeout(),
                        )
                        .await?,
                    );
                    // Statements after a COPY FROM in the same Query are not run.
                    if copy {
                        break;
                    }
                }
                Err(e) => {
                    let PgWireError::UserError(info) = to_pg(&e) else {
                        return Err(to_pg(&e));
                    };
                    responses.push(Response::Error(info));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Sends the responses of a Query message; true when one started a COPY.
async fn send_responses<C>(
    client: &mut C,
    conn: &ConnState,
    responses: Vec<Response>,
) -> PgWireResult<bool>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut copying = false;
    for r in responses {
        match r {
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Response::Query(results) => send_query_response(client, results, true).await?,
            Response::Execution(tag)
            | Response::TransactionStart(tag)
            | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
            Response::Error(e) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?;
            }
            Response::CopyIn(c) => {
                copy::send_copy_in_response(client, c).await?;
                copying = true;
            }
            Response::CopyOut(_) => send_copy_out(client, conn).await?,
            Response::CopyBoth(c) => {
                copy::send_copy_both_response(client, c).await?;
                copying = true;
            }
        }
    }
    Ok(copying)
}

/// A statement prepared through the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub statement: Statement,
    pub described: Described,
}

/// Parses and describes statements for the extended protocol.
pub struct ConnParser {
    shared: Arc<PgShared>,
    session: Arc<SessionCell>,
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

#[async_trait]
impl QueryParser for ConnParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut guard = session(&self.session, &self.shared, client).await;
        let Some(session) = guard.as_mut() else {
            return Err(PgWireError::ApiError("no session".into()));
        };
        let mut statements = session.parse(sql).map_err(|e| to_pg(&e))?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement".to_string(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let described = session.describe(&statement).await.map_err(|e| to_pg(&e))?;
        Ok(Some(Arc::new(Prepared {
            statement,
            described,
        })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.described.params.iter().map(pg_type).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.described.schema {
            Some(schema) => fields(
                &json_columns::client_schema(schema),
                column_format.unwrap_or(&Format::UnifiedText),
                Arc::new(FormatOptions::default()),
            ),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for ConnHandler {
    type Statement = Arc<Prepared>;
    type QueryParser = ConnParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.0.parser.clone()
    }

    /// ReadyForQuery after Sync carries the session's transaction state (see `on_query`).
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        // An error in this Parse..Sync cycle left pgwire waiting for this Sync.
        let failed = matches!(client.state(), PgWireConnectionState::AwaitingSync);
        let status = self.session_status(client, failed).await;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    /// Describe of a portal that is a SQL cursor (`DECLARE name CURSOR ...`): psycopg 3's
    /// server-side cursors describe the cursor by name before fetching from it.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_PORTAL
            && client.portal_store().get_portal(name).is_none()
        {
            let schema = session(&self.0.session, &self.0.shared, client)
                .await
                .as_ref()
                .and_then(|s| s.cursor_schema(name));
            if let Some(schema) = schema {
                let fields = fields(
                    &json_columns::client_schema(&schema),
                    &Format::UnifiedText,
                    Arc::new(FormatOptions::default()),
                )?;
                return send_describe_response(client, &DescribePortalResponse::new(fields)).await;
            }
        }
        // A statement that returns no rows describes as ParameterDescription + NoData.
        // pgwire 0.41's send_describe_response sends NoData only when there are no
        // parameters either, and a RowDescription of zero columns otherwise, which makes
        // pgjdbc count a batch of INSERTs as [0, 0, ...].
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name)
            && stmt.statement.described.schema.is_none()
        {
            // The client's types from Parse where it gave them, else the server's.
            let described = self.do_describe_statement(client, &stmt).await?;
            let oids = described.parameters.iter().map(|t| t.oid()).collect();
            client
                .send(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(oids),
                ))
                .await?;
            client
                .send(PgWireBackendMessage::NoData(NoData::new()))
                .await?;
            return Ok(());
        }
        self._on_describe(client, message).await
    }

    /// Streams the rows of a row-returning portal executed to completion (`max_rows` 0)
    /// straight to the client. pgwire's default collects them into a Vec first, which for
    /// a large result holds it all in memory. Other cases take pgwire's path.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            _ => return self._on_execute(client, message).await,
        };
        if is_copy_out(&portal.statement.statement.statement) {
            client.set_state(PgWireConnectionState::QueryInProgress);
            let response = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await;
            client.set_state(PgWireConnectionState::ReadyForQuery);
            return match response? {
                Response::CopyOut(_) => send_copy_out(client, &self.0).await,
                _ => Err(PgWireError::ApiError("COPY TO STDOUT sent no rows".into())),
            };
        }
        let streamable = message.max_rows == 0
            && portal.statement.statement.described.schema.is_some()
            && matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !streamable {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let response = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let mut query = match response? {
            Response::Query(q) => q,
            _ => {
                return Err(PgWireError::ApiError(
                    "a row-returning statement returned no rows".into(),
                ));
            }
        };
        *portal.state().lock().await = PortalExecutionState::Finished;
        let tag = query.command_tag().to_string();
        let mut rows = 0usize;
        while let Some(row) = query.data_rows().next().await {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            rows += 1;
        }
        client
            .feed(PgWireBackendMessage::CommandComplete(
                Tag::new(&tag).with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let this = &self.0;
        let token = this.begin_statement(client);
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let prepared = portal.statement.statement.clone();
        let inferred: Vec<Option<&DataType>> = prepared
            .described
            .params
            .iter()
            .map(|t| t.as_ref())
            .collect();
        let server_types: Vec<Type> = prepared.described.params.iter().map(pg_type).collect();
        let server_refs: Vec<Option<&Type>> = server_types.iter().map(Some).collect();
        let params = arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
            portal,
            &inferred,
            &server_refs,
        )?;
        let mut guard = session(&this.session, &this.shared, client).await;
        let Some(session) = guard.as_mut() else {
            return Err(PgWireError::ApiError("no session".into()));
        };
        let control = QueryControl::new(token, session.timeout());
        let params = (!prepared.described.params.is_empty()).then_some(params);
        let timeout = session.timeout();
        let out = session
            .execute(prepared.statement.clone(), params, &control)
            .await
            .map_err(|e| to_pg(&e))?;
        drop(guard);
        this.respond(
            out,
            &portal.result_column_format,
            options,
            control.cancel.clone(),
            timeout,
        )
        .await
    }
}

impl ConnHandler {
    /// The session's transaction state for ReadyForQuery, recorded as pgwire's too. An
    /// error pgwire raised itself (`failed_outside`) fails an open block as any error
    /// does.
    pub(super) async fn session_status<C: ClientInfo>(
        &self,
        client: &mut C,
        failed_outside: bool,
    ) -> TransactionStatus {
        let mut guard = self.0.session.lock().await;
        let status = match guard.as_mut() {
            Some(s) => {
                if failed_outside {
                    s.fail_transaction();
                }
                match s.transaction_status() {
                    TxStatus::Idle => TransactionStatus::Idle,
                    TxStatus::InBlock => TransactionStatus::Transaction,
                    TxStatus::Failed => TransactionStatus::Error,
                }
            }
            None => TransactionStatus::Idle,
        };
        client.set_transaction_status(status);
        status
    }
}

impl Cancellable for ConnState {
    fn cancel_current(&self) {
        ConnState::cancel_current(self);
    }
}

/// Whether a prepared statement is `COPY ... TO STDOUT`.
fn is_copy_out(stmt: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{CopyTarget, Statement as Sql};
    matches!(
        stmt,
        Statement::Statement(s) if matches!(
            s.as_ref(),
            Sql::Copy { to: true, target: CopyTarget::Stdout, .. }
        )
    )
}

/// Sends the rows of the COPY TO that [`ConnState::respond`] encoded.
async fn send_copy_out<C>(client: &mut C, conn: &ConnState) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let out = conn
        .copy_out
        .lock()
        .take()
        .ok_or_else(|| PgWireError::ApiError("no COPY TO rows to send".into()))?;
    copy_out::send(client, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_hold_settings_as_libpq_sends_them() {
        let got = command_line_settings(
            "-c statement_timeout=1500 --search-path=gold,silver -cwork_mem=4MB -c application_name=a\\ b",
        );
        let want = [
            ("statement_timeout", "1500"),
            ("search_path", "gold,silver"),
            ("work_mem", "4MB"),
            ("application_name", "a b"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        let mut meta = std::collections::HashMap::new();
        meta.insert("user".to_string(), "ann".to_string());
        meta.insert("application_name".to_string(), "psql".to_string());
        meta.insert("options".to_string(), "-c search_path=gold".to_string());
        assert_eq!(
            startup_settings(&meta),
            [
                ("application_name".to_string(), "psql".to_string()),
                ("search_path".to_string(), "gold".to_string())
            ]
        );
    }
}
