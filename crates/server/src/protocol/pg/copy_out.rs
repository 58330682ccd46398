//! `COPY ... TO STDOUT` on the wire: CopyOutResponse, one CopyData per row (as
//! PostgreSQL sends them; libpq's `PQgetCopyData` hands clients one row per call; the
//! binary signature rides with the first row), then CopyDone and `COPY n`. Rows are
//! encoded in PostgreSQL's text, CSV or binary COPY format a batch at a time on a worker
//! task, one batch ahead of the socket: columns of common types by [`FastRows`], others
//! by pgwire's `CopyEncoder` through arrow-pg (the binary values are those of binary
//! DataRows).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::types::format::FormatOptions;

use super::ahead;
use super::copy_rows::FastRows;
use super::json_columns;
use super::tid_columns;
use crate::engine::copy::{CopyFormat, CopyOptions, ForceQuote};

/// The encoded rows of a COPY TO, ready to send.
pub struct CopyOut {
    binary: bool,
    columns: usize,
    /// Sent before the rows: the binary signature, or the CSV/text header line.
    header: Option<Bytes>,
    /// Each batch's rows, one message each.
    rows: BoxStream<'static, PgWireResult<Vec<Bytes>>>,
}

/// Encodes `stream` as `options` says.
pub fn encode(
    stream: SendableRecordBatchStream,
    options: &CopyOptions,
    format_options: Arc<FormatOptions>,
) -> PgWireResult<CopyOut> {
    let schema = json_columns::client_schema(&stream.schema());
    // Binary COPY sends tuple ids as their six bytes.
    let tids = if options.format == CopyFormat::Binary {
        tid_columns::tid_columns(&schema)
    } else {
        Vec::new()
    };
    let schema = tid_columns::binary_schema(&schema, &tids);
    let iso = format_options.date_style.trim_start().starts_with("ISO");
    let binary = options.format == CopyFormat::Binary;
    let wire = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
        &schema,
        &wire,
        Some(format_options),
    )?);
    let header = if binary {
        Some(binary_signature())
    } else if options.header {
        Some(header_line(&schema, options))
    } else {
        None
    };
    let columns = schema.fields().len();
    let fast = FastRows::plan(&schema, &fields, options, iso);
    let new_encoder = encoder_factory(options, &schema, fields.clone());
    let rows = ahead::encode_ahead(stream, move |batch| {
        let batch =
            tid_columns::to_binary(batch, &tids).map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if let Some(fast) = &fast {
            return Ok(fast.encode(&batch));
        }
        let mut encoder = new_encoder();
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for (c, field) in fields.iter().enumerate() {
                arrow_pg::encoder::encode_value(
                    &mut encoder,
                    batch.column(c),
                    row,
                    batch.schema_ref().field(c),
                    field,
                )?;
            }
            out.push(encoder.take_copy().data);
        }
        Ok(out)
    });
    Ok(CopyOut {
        binary,
        columns,
        header,
        rows,
    })
}

/// A fresh encoder per batch. The binary encoder writes the signature with its first
/// row, so binary rows get an encoder that has written it already (the signature goes
/// out on its own, also when there is no row).
fn encoder_factory(
    options: &CopyOptions,
    schema: &Schema,
    fields: Arc<Vec<FieldInfo>>,
) -> Arc<dyn Fn() -> CopyEncoder + Send + Sync> {
    match options.format {
        CopyFormat::Binary => Arc::new(move || {
            let mut e = CopyEncoder::new_binary(fields.clone());
            // Consume the signature: encode no field and take it.
            let _ = e.take_copy();
            e
        }),
        CopyFormat::Text => {
            let text = CopyTextOptions {
                delimiter: (options.delimiter as char).to_string().into(),
                null_string: options.null.clone().into(),
            };
            Arc::new(move || CopyEncoder::new_text(fields.clone(), text.clone()))
        }
        CopyFormat::Csv => {
            let force_quote = match &options.force_quote {
                ForceQuote::None => Vec::new(),
                ForceQuote::All => (0..schema.fields().len()).collect(),
                ForceQuote::Columns(names) => schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| names.iter().any(|n| n == f.name()))
                    .map(|(i, _)| i)
                    .collect(),
            };
            let csv = CopyCsvOptions {
                delimiter: (options.delimiter as char).to_string().into(),
                quote: (options.quote as char).to_string().into(),
                escape: (options.escape as char).to_string().into(),
                null_string: options.null.clone().into(),
                force_quote,
            };
            Arc::new(move || CopyEncoder::new_csv(fields.clone(), csv.clone()))
        }
    }
}

/// `PGCOPY\n\377\r\n\0`, no flags, no header extension.
fn binary_signature() -> Bytes {
    let mut b = BytesMut::with_capacity(19);
    b.put_slice(b"PGCOPY\n\xff\r\n\0");
    b.put_i32(0);
    b.put_i32(0);
    b.freeze()
}

/// The column names as a first line (CSV quotes a name that needs it).
fn header_line(schema: &Schema, options: &CopyOptions) -> Bytes {
    let quote = options.quote as char;
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = tidepool_engine::names::display(f.name());
            let needs = options.format == CopyFormat::Csv
                && (name.contains(options.delimiter as char)
                    || name.contains(quote)
                    || name.contains(['\n', '\r']));
            if needs {
                let doubled = name.replace(quote, &format!("{quote}{quote}"));
                format!("{quote}{doubled}{quote}")
            } else {
                name.to_string()
            }
        })
        .collect();
    let mut line = names.join(&(options.delimiter as char).to_string());
    line.push('\n');
    Bytes::from(line)
}

/// Sends a COPY TO's rows; ends with CommandComplete `COPY n`. A failure while rows
/// stream is returned (the caller sends the ErrorResponse, as PostgreSQL ends a failed
/// COPY TO).
pub async fn send<C>(client: &mut C, out: CopyOut) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let format = i16::from(out.binary);
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format as i8,
            out.columns as i16,
            vec![format; out.columns],
        )))
        .await?;
    // The binary signature goes out with the first row (or the trailer), as PostgreSQL
    // sends it: psycopg reads the signature and a row from the first message. A text or
    // CSV header line is a message of its own, as PostgreSQL's.
    let mut signature = None;
    match out.header {
        Some(h) if out.binary => signature = Some(h),
        Some(h) => {
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(h)))
                .await?
        }
        None => {}
    }
    let with_signature = |signature: &mut Option<Bytes>, data: Bytes| match signature.take() {
        Some(s) => {
            let mut b = BytesMut::with_capacity(s.len() + data.len());
            b.extend_from_slice(&s);
            b.extend_from_slice(&data);
            b.freeze()
        }
        None => data,
    };
    let mut rows = 0usize;
    let mut batches = out.rows;
    while let Some(batch) = batches.next().await {
        for row in batch? {
            let row = with_signature(&mut signature, row);
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(row)))
                .await?;
            rows += 1;
        }
    }
    if out.binary {
        let trailer = with_signature(&mut signature, CopyEncoder::finish_copy_binary().data);
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(trailer)))
            .await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    client
        .feed(PgWireBackendMessage::CommandComplete(
            Tag::new("COPY").with_rows(rows).into(),
        ))
        .await?;
    Ok(())
}
