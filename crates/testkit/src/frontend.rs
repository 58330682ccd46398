//! A minimal Postgres frontend that sends protocol messages exactly as it is told.
//!
//! Drivers differ in how they talk, not only in what they ask: Npgsql pipelines a `Query`
//! (`DISCARD ALL`) in front of Parse/Bind/Describe/Execute with one Sync, pgjdbc describes
//! statements before binding, asyncpg asks for every result in binary. Client libraries
//! hide those patterns, so `tidepool-bench connect` and the driver compatibility tests
//! replay them with this frontend, message by message, and read back every reply.
//! Authentication: trust, cleartext and SCRAM-SHA-256 are not handled here (trust only,
//! which is what a loopback server without `[[users]]` offers).

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Errors of the frontend itself (not a server's ErrorResponse, which is a [`Reply`]).
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("server refused the connection: {0}")]
    Refused(String),
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub typmod: i32,
    pub format: i16,
}

/// A backend message, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    PortalSuspended,
    EmptyQuery,
    RowDescription(Vec<Column>),
    ParameterDescription(Vec<u32>),
    DataRow(Vec<Option<Vec<u8>>>),
    CommandComplete(String),
    /// ErrorResponse: SQLSTATE and message.
    Error {
        code: String,
        message: String,
    },
    Notice(String),
    ParameterStatus(String, String),
    Ready(u8),
    Other(u8),
}

/// What one statement of a batch answered.
#[derive(Debug, Clone, Default)]
pub struct StatementResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    pub tag: Option<String>,
    pub error: Option<(String, String)>,
    pub parameter_types: Vec<u32>,
}

impl StatementResult {
    /// Index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Value of column `name` in every row, as text (binary values are not converted).
    pub fn texts(&self, name: &str) -> Vec<Option<String>> {
        let Some(i) = self.column(name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|r| {
                r.get(i)
                    .cloned()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            })
            .collect()
    }
}

/// Splits replies up to a ReadyForQuery into one result per statement: a result ends at
/// CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse.
pub fn split_results(replies: &[Reply]) -> Vec<StatementResult> {
    let mut out = Vec::new();
    let mut cur = StatementResult::default();
    let mut touched = false;
    for r in replies {
        match r {
            Reply::RowDescription(cols) => {
                cur.columns = cols.clone();
                touched = true;
            }
            Reply::ParameterDescription(types) => {
                cur.parameter_types = types.clone();
                touched = true;
            }
            Reply::NoData => touched = true,
            Reply::DataRow(row) => {
                cur.rows.push(row.clone());
                touched = true;
            }
            Reply::CommandComplete(tag) => {
                cur.tag = Some(tag.clone());
                out.push(std::mem::take(&mut cur));
                touched = false;
            }
            Reply::EmptyQuery | Reply::PortalSuspended => {
                out.push(std::mem::take(&mut cur));
                touched = false;
            }
            Reply::Error { code, message } => {
                cur.error = Some((code.clone(), message.clone()));
                out.push(std::mem::take(&mut cur));
                touched = false;
            }
            _ => {}
        }
    }
    if touched {
        out.push(cur);
    }
    out
}

/// A connection that writes messages into a buffer until [`Frontend::flush`].
pub struct Frontend {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
    /// ParameterStatus values the server sent at startup.
    pub parameters: Vec<(String, String)>,
}

impl Frontend {
    /// Connects and runs the startup: `params` are the StartupMessage's (user, database,
    /// client_encoding, ...). Returns once the server is ready for a query.
    pub async fn connect(
        addr: std::net::SocketAddr,
        params: &[(&str, &str)],
    ) -> Result<Frontend, FrontendError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut f = Frontend {
            stream,
            out: BytesMut::with_capacity(8192),
            input: BytesMut::with_capacity(16384),
            parameters: Vec::new(),
        };
        let mut body = BytesMut::new();
        body.put_i32(196608);
        for (k, v) in params {
            put_cstr(&mut body, k);
            put_cstr(&mut body, v);
        }
        body.put_u8(0);
        f.out.put_i32(body.len() as i32 + 4);
        f.out.extend_from_slice(&body);
        f.flush().await?;
        loop {
            let (tag, mut msg) = f.read_message().await?;
            match tag {
                b'R' => {
                    let kind = msg.get_i32();
                    if kind != 0 {
                        return Err(FrontendError::Protocol(format!(
                            "authentication method {kind} is not supported by this frontend"
                        )));
                    }
                }
                b'S' => {
                    let k = get_cstr(&mut msg)?;
                    let v = get_cstr(&mut msg)?;
                    f.parameters.push((k, v));
                }
                b'K' => {}
                b'E' => {
                    let (code, message) = error_fields(&mut msg)?;
                    return Err(FrontendError::Refused(format!("{code}: {message}")));
                }
                b'Z' => return Ok(f),
                other => {
                    return Err(FrontendError::Protocol(format!(
                        "unexpected message {:?} during startup",
                        other as char
                    )));
                }
            }
        }
    }

    /// Simple query.
    pub fn query(&mut self, sql: &str) -> &mut Self {
        let mut body = BytesMut::new();
        put_cstr(&mut body, sql);
        self.message(b'Q', &body)
    }

    /// Parse: statement `name` ("" unnamed) with declared parameter type OIDs (0 = unknown).
    pub fn parse(&mut self, name: &str, sql: &str, param_types: &[u32]) -> &mut Self {
        let mut body = BytesMut::new();
        put_cstr(&mut body, name);
        put_cstr(&mut body, sql);
        body.put_i16(param_types.len() as i16);
        for t in param_types {
            body.put_u32(*t);
        }
        self.message(b'P', &body)
    }

    /// Bind: parameter values (None = NULL) in `param_formats` (0 text, 1 binary; none =
    /// all text, one = all the same), results in `result_formats` likewise.
    pub fn bind(
        &mut self,
        portal: &str,
        statement: &str,
        param_formats: &[i16],
        params: &[Option<&[u8]>],
        result_formats: &[i16],
    ) -> &mut Self {
        let mut body = BytesMut::new();
        put_cstr(&mut body, portal);
        put_cstr(&mut body, statement);
        body.put_i16(param_formats.len() as i16);
        for f in param_formats {
            body.put_i16(*f);
        }
        body.put_i16(params.len() as i16);
        for p in params {
            match p {
                Some(v) => {
                    body.put_i32(v.len() as i32);
                    body.extend_from_slice(v);
                }
                None => body.put_i32(-1),
            }
        }
        body.put_i16(result_formats.len() as i16);
        for f in result_formats {
            body.put_i16(*f);
        }
        self.message(b'B', &body)
    }

    /// Describe a portal.
    pub fn describe_portal(&mut self, portal: &str) -> &mut Self {
        let mut body = BytesMut::new();
        body.put_u8(b'P');
        put_cstr(&mut body, portal);
        self.message(b'D', &body)
    }

    /// Describe a prepared statement.
    pub fn describe_statement(&mut self, name: &str) -> &mut Self {
        let mut body = BytesMut::new();
        body.put_u8(b'S');
        put_cstr(&mut body, name);
        self.message(b'D', &body)
    }

    /// Execute a portal (`max_rows` 0 = all).
    pub fn execute(&mut self, portal: &str, max_rows: i32) -> &mut Self {
        let mut body = BytesMut::new();
        put_cstr(&mut body, portal);
        body.put_i32(max_rows);
        self.message(b'E', &body)
    }

    /// Close a prepared statement.
    pub fn close_statement(&mut self, name: &str) -> &mut Self {
        let mut body = BytesMut::new();
        body.put_u8(b'S');
        put_cstr(&mut body, name);
        self.message(b'C', &body)
    }

    pub fn sync(&mut self) -> &mut Self {
        self.message(b'S', &[])
    }

    /// Parse + Bind + Describe portal + Execute of one unnamed statement, without Sync:
    /// how Npgsql sends each statement of an unprepared command.
    pub fn extended(
        &mut self,
        sql: &str,
        params: &[Option<&[u8]>],
        result_format: i16,
    ) -> &mut Self {
        self.parse("", sql, &vec![0; params.len()]);
        self.bind("", "", &[], params, &[result_format]);
        self.describe_portal("");
        self.execute("", 0)
    }

    fn message(&mut self, tag: u8, body: &[u8]) -> &mut Self {
        self.out.put_u8(tag);
        self.out.put_i32(body.len() as i32 + 4);
        self.out.extend_from_slice(body);
        self
    }

    /// Writes everything queued so far in one go.
    pub async fn flush(&mut self) -> Result<(), FrontendError> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Flushes, then reads replies until `ready` ReadyForQuery messages have arrived.
    pub async fn round_trip(&mut self, ready: usize) -> Result<Vec<Reply>, FrontendError> {
        self.flush().await?;
        let mut replies = Vec::new();
        let mut seen = 0;
        while seen < ready {
            let reply = self.read_reply().await?;
            if matches!(reply, Reply::Ready(_)) {
                seen += 1;
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Sends Terminate and closes.
    pub async fn terminate(mut self) -> Result<(), FrontendError> {
        self.message(b'X', &[]);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    async fn read_reply(&mut self) -> Result<Reply, FrontendError> {
        let (tag, mut m) = self.read_message().await?;
        Ok(match tag {
            b'1' => Reply::ParseComplete,
            b'2' => Reply::BindComplete,
            b'3' => Reply::CloseComplete,
            b'n' => Reply::NoData,
            b's' => Reply::PortalSuspended,
            b'I' => Reply::EmptyQuery,
            b'T' => {
                let n = m.get_i16();
                let mut cols = Vec::with_capacity(n.max(0) as usize);
                for _ in 0..n {
                    let name = get_cstr(&mut m)?;
                    need(&m, 18)?;
                    cols.push(Column {
                        name,
                        table_oid: m.get_u32(),
                        attnum: m.get_i16(),
                        type_oid: m.get_u32(),
                        type_len: m.get_i16(),
                        typmod: m.get_i32(),
                        format: m.get_i16(),
                    });
                }
                Reply::RowDescription(cols)
            }
            b't' => {
                let n = m.get_i16();
                Reply::ParameterDescription((0..n).map(|_| m.get_u32()).collect())
            }
            b'D' => {
                let n = m.get_i16();
                let mut row = Vec::with_capacity(n.max(0) as usize);
                for _ in 0..n {
                    let len = m.get_i32();
                    if len < 0 {
                        row.push(None);
                    } else {
                        need(&m, len as usize)?;
                        row.push(Some(m.split_to(len as usize).to_vec()));
                    }
                }
                Reply::DataRow(row)
            }
            b'C' => Reply::CommandComplete(get_cstr(&mut m)?),
            b'E' => {
                let (code, message) = error_fields(&mut m)?;
                Reply::Error { code, message }
            }
            b'N' => Reply::Notice(error_fields(&mut m)?.1),
            b'S' => {
                let k = get_cstr(&mut m)?;
                let v = get_cstr(&mut m)?;
                Reply::ParameterStatus(k, v)
            }
            b'Z' => Reply::Ready(m.first().copied().unwrap_or(b'I')),
            other => Reply::Other(other),
        })
    }

    async fn read_message(&mut self) -> Result<(u8, BytesMut), FrontendError> {
        loop {
            if self.input.len() >= 5 {
                let len = i32::from_be_bytes([
                    self.input[1],
                    self.input[2],
                    self.input[3],
                    self.input[4],
                ]);
                if len < 4 {
                    return Err(FrontendError::Protocol(format!("message length {len}")));
                }
                let total = len as usize + 1;
                if self.input.len() >= total {
                    let mut msg = self.input.split_to(total);
                    let tag = msg[0];
                    msg.advance(5);
                    return Ok((tag, msg));
                }
            }
            let n = self.stream.read_buf(&mut self.input).await?;
            if n == 0 {
                return Err(FrontendError::Protocol(
                    "server closed the connection".into(),
                ));
            }
        }
    }
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.put_u8(0);
}

fn need(m: &BytesMut, n: usize) -> Result<(), FrontendError> {
    if m.len() < n {
        return Err(FrontendError::Protocol("truncated message".into()));
    }
    Ok(())
}

fn get_cstr(m: &mut BytesMut) -> Result<String, FrontendError> {
    let Some(end) = m.iter().position(|b| *b == 0) else {
        return Err(FrontendError::Protocol("unterminated string".into()));
    };
    let s = String::from_utf8_lossy(&m[..end]).into_owned();
    m.advance(end + 1);
    Ok(s)
}

fn error_fields(m: &mut BytesMut) -> Result<(String, String), FrontendError> {
    let mut code = String::new();
    let mut message = String::new();
    while let Some(&field) = m.first() {
        m.advance(1);
        if field == 0 {
            break;
        }
        let value = get_cstr(m)?;
        match field {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    Ok((code, message))
}
