//! `tidepool sql "SELECT ..."`: run statements on the lake in-process and print results.

use std::process::ExitCode;

use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::Overrides;
use crate::engine::{Output, QueryControl};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// SQL text; several statements separated by ';' run in order
    pub query: String,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Run on a server over Arrow Flight SQL instead of in-process, e.g.
    /// grpc://127.0.0.1:50051 (grpc+tls:// for TLS)
    #[arg(long, value_name = "URL")]
    pub flight: Option<String>,
    /// For --flight (Basic handshake, then a bearer token)
    #[command(flatten)]
    pub login: super::remote::Login,
}

/// `--flight`: sends the text to a server as one command; the server runs the statements
/// in order and returns the last one's rows.
async fn run_remote(url: &str, args: &SqlArgs) -> anyhow::Result<ExitCode> {
    use crate::protocol::flight::client;
    let opts = args.login.options(url.to_string());
    let mut conn = match client::connect(&opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match client::query(&mut conn, &args.query).await {
        Ok((schema, batches)) => {
            if schema.fields().is_empty() && batches.is_empty() {
                println!("OK");
            } else {
                print(&batches, args.format)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn run(overrides: &Overrides, args: SqlArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.flight {
        return run_remote(url, &args).await;
    }
    let settings = super::settings(overrides)?;
    let (_, engine) = super::open(&settings)?;
    crate::models::records::register(&engine);
    crate::models::freshness::register(&engine);
    let mut session = engine.session("tidepool");
    let statements = session.parse(&args.query)?;
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    for stmt in statements {
        let control = QueryControl::new(cancel.clone(), session.timeout());
        match session.execute(stmt, None, &control).await {
            Ok(Output::CopyIn(copy)) => {
                // COPY ... FROM STDIN reads this process's standard input.
                let mut data = copy.data;
                let feed = async move {
                    use tokio::io::AsyncReadExt;
                    let mut stdin = tokio::io::stdin();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        match stdin.read(&mut buf).await {
                            Ok(0) => return data.finish().await,
                            Ok(n) => {
                                if !data.send(buf[..n].to_vec().into()).await {
                                    return data.finish().await;
                                }
                            }
                            Err(e) => return data.fail(e.to_string()).await,
                        }
                    }
                };
                let (_, written) =
                    tokio::join!(feed, session.finish_copy_in(copy.insert, &control));
                match written {
                    Ok(n) => println!("COPY {n}"),
                    Err(e) => {
                        eprintln!("ERROR: {}", e.message());
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Ok(Output::Rows { stream, .. } | Output::CopyOut { stream, .. }) => {
                let batches: Vec<RecordBatch> = match stream.try_collect().await {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("ERROR: {}", crate::engine::EngineError::from(e).message());
                        return Ok(ExitCode::FAILURE);
                    }
                };
                print(&batches, args.format)?;
            }
            Ok(Output::Command(tag)) => match tag.rows {
                Some(n) => println!("{} {n}", tag.tag),
                None => println!("{}", tag.tag),
            },
            Err(e) => {
                eprintln!("ERROR: {}", e.message());
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print(batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Table => {
            writeln!(
                out,
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}
