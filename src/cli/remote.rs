//! `--server URL` (or `TIDEPOOL_SERVER`): commands that drive a running `tidepool serve`
//! through its admin gRPC API (on the Flight SQL port) instead of working on the lake
//! here: `run`/`build` with the same live progress as a local run, `status`, `pause`,
//! `resume`, `replay`, `maintain`, `reload`. Credentials go as Basic auth on every call.

use std::path::PathBuf;
use std::process::ExitCode;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::progress::{ModelLine, RunDisplay, TestLine};
use crate::protocol::admin::pb;
use crate::protocol::admin::pb::admin_client::AdminClient;

/// Where the server is and who calls it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Remote {
    /// Drive a running server instead of working here: http://host:50051 (its Flight SQL
    /// port, or its [admin] listen port; https:// for TLS)
    #[arg(long, env = "TIDEPOOL_SERVER", value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub login: Login,
}

/// Who calls a server (`--server`, `sql --flight`) and which CA to trust.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Login {
    /// User to call the server as
    #[arg(long, env = "TIDEPOOL_USER")]
    pub user: Option<String>,
    /// Password (prefer the TIDEPOOL_PASSWORD environment variable)
    #[arg(long, env = "TIDEPOOL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// CA certificate (PEM) to trust for TLS (https://, grpc+tls://)
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl Login {
    /// Connection options for `url` with these credentials.
    pub fn options(&self, url: String) -> crate::protocol::flight::client::ConnectOptions {
        crate::protocol::flight::client::ConnectOptions {
            url,
            user: self.user.clone(),
            password: self.password.clone(),
            ca: self.tls_ca.clone(),
        }
    }
}

impl Remote {
    /// The server to drive, if one is given (an empty TIDEPOOL_SERVER is none).
    pub fn url(&self) -> Option<&str> {
        self.server.as_deref().filter(|s| !s.trim().is_empty())
    }
}

/// Adds the Basic credentials to every call.
#[derive(Clone)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Client = AdminClient<InterceptedService<Channel, Credentials>>;

/// Connects to `remote.server`.
pub async fn connect(remote: &Remote) -> anyhow::Result<Client> {
    let url = remote
        .url()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("this command needs --server URL (or TIDEPOOL_SERVER)"))?;
    let login = &remote.login;
    let channel = crate::protocol::flight::client::channel(&login.options(url)).await?;
    let auth = match &login.user {
        None => None,
        Some(user) => {
            let pair = format!("{user}:{}", login.password.as_deref().unwrap_or_default());
            let basic = format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair)
            );
            Some(
                basic
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the user or password cannot go in a header"))?,
            )
        }
    };
    Ok(AdminClient::with_interceptor(channel, Credentials(auth)))
}

/// Prints a refused call the way the other commands print errors.
fn failed(e: tonic::Status) -> ExitCode {
    eprintln!("ERROR: {} ({:?})", e.message(), e.code());
    ExitCode::FAILURE
}

/// What a remote run builds: dbt selectors and `var()` values as given.
pub struct Models<'a> {
    pub select: &'a [String],
    pub exclude: &'a [String],
    pub vars: Option<&'a str>,
}

/// `run` / `build --server`: the run happens on the server; progress streams back.
pub async fn run(
    remote: &Remote,
    selection: Models<'_>,
    threads: usize,
    full_refresh: bool,
    with_tests: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = connect(remote).await?;
    let request = pb::RunModelsRequest {
        selector: selection.select.join(" "),
        exclude: selection.exclude.join(" "),
        full_refresh,
        vars: selection.vars.unwrap_or_default().to_string(),
        with_tests,
        threads: threads as u32,
    };
    let mut stream = match client.run_models(request).await {
        Ok(s) => s.into_inner(),
        Err(e) => return Ok(failed(e)),
    };
    let place = format!(" on {}", remote.server.as_deref().unwrap_or_default());
    let mut display: Option<RunDisplay> = None;
    let mut finished: Option<pb::Run> = None;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => return Ok(failed(e)),
        };
        use pb::run_progress::Event;
        match msg.event {
            Some(Event::Started(s)) => display
                .get_or_insert_with(|| RunDisplay::new(s.total as usize, threads, &place))
                .started(&s.name, &s.materialized, &s.file),
            Some(Event::Test(t)) => {
                if let Some(d) = display.as_mut() {
                    d.tested(&TestLine {
                        name: &t.name,
                        path: &t.path,
                        status: &t.status,
                        failures: t.failures,
                        sample: &t.sample,
                        error: t.error.clone(),
                    });
                }
            }
            Some(Event::Model(m)) => display
                .get_or_insert_with(|| RunDisplay::new(m.total as usize, threads, &place))
                .finished(&ModelLine {
                    relation: &m.name,
                    materialized: &m.materialized,
                    status: &m.status,
                    rows: u64::try_from(m.rows).ok(),
                    seconds: m.duration_s,
                    message: &m.error,
                }),
            Some(Event::Finished(run)) => finished = Some(run),
            None => {}
        }
    }
    let ok = match display {
        Some(d) => d.finish(),
        None => {
            println!("nothing selected");
            true
        }
    };
    match finished {
        Some(run) => {
            println!("run {} recorded on the server: {}", run.run_id, run.status);
            Ok(if ok && run.status == "success" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        None => {
            eprintln!("ERROR: the server ended the stream before the run finished");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Only this source
    #[arg(long)]
    pub source: Option<String>,
    /// Runs to show
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `status --server`: ingestion per source and partition, then the last runs.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote).await?;
    let health = match client.health(pb::HealthRequest {}).await {
        Ok(h) => h.into_inner(),
        Err(e) => return Ok(failed(e)),
    };
    println!(
        "{} {}: tidepool {}, lake {}, up {}s, {} models, {} sources\n",
        args.remote.server.as_deref().unwrap_or_default(),
        health.status,
        health.version,
        health.lake,
        health.uptime_ms / 1000,
        health.models,
        health.sources.len()
    );
    let ingest = match client
        .ingest_status(pb::IngestStatusRequest {
            source: args.source.clone().unwrap_or_default(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => return Ok(failed(e)),
    };
    let rows: Vec<Vec<String>> = ingest
        .partitions
        .iter()
        .map(|p| {
            let state = match (p.paused, p.running) {
                (true, _) => "paused",
                (false, true) => "running",
                (false, false) => "stopped",
            };
            vec![
                p.source.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                p.committed_offset.to_string(),
                p.lag.to_string(),
                format!("{:.0}", p.rate),
                p.messages.to_string(),
                p.dead_letters.to_string(),
                state.to_string(),
                p.broker_state.clone(),
                p.last_commit.clone(),
                p.last_error.clone(),
            ]
        })
        .collect();
    println!("ingestion");
    println!(
        "{}\n",
        table(
            &[
                "source",
                "topic",
                "partition",
                "committed",
                "lag",
                "msg/s",
                "messages",
                "dead",
                "state",
                "broker",
                "last_commit",
                "last_error"
            ],
            &rows
        )
    );
    let runs = match client
        .list_runs(pb::ListRunsRequest { limit: args.runs })
        .await
    {
        Ok(r) => r.into_inner().runs,
        Err(e) => return Ok(failed(e)),
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.command.clone(),
                r.selector.clone(),
                r.status.clone(),
                r.models.to_string(),
                r.tests.to_string(),
                r.errors.to_string(),
                format!("{:.2}s", r.duration_s),
                r.finished_at.clone(),
            ]
        })
        .collect();
    println!("last runs");
    println!(
        "{}",
        table(
            &[
                "run_id",
                "command",
                "selector",
                "status",
                "models",
                "tests",
                "errors",
                "duration",
                "finished_at"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// The source's name (as in [[sources]])
    pub source: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `pause` / `resume --server`.
pub async fn switch(args: SourceArgs, pause: bool) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote).await?;
    let request = pb::SourceRequest {
        source: args.source.clone(),
    };
    let result = if pause {
        client.pause_source(request).await
    } else {
        client.resume_source(request).await
    };
    match result {
        Ok(r) => {
            let s = r.into_inner();
            println!(
                "{}: {}",
                s.source,
                if s.paused {
                    "paused (what it had consumed is committed)"
                } else {
                    "resumed"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(e)),
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["from_offset", "from_timestamp"])))]
pub struct ReplayArgs {
    /// The source's name
    pub source: String,
    /// Re-read every partition from this offset
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// Re-read from the first message at or after this time (RFC 3339, or
    /// "YYYY-MM-DD HH:MM:SS" in UTC)
    #[arg(long)]
    pub from_timestamp: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// `replay --server`: answers once the replayed offsets are in the lake again.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote).await?;
    use pb::replay_source_request::From;
    let from = match (args.from_offset, &args.from_timestamp) {
        (Some(o), _) => From::FromOffset(o),
        (None, Some(t)) => From::FromTimestamp(t.clone()),
        (None, None) => anyhow::bail!("give --from-offset or --from-timestamp"),
    };
    match client
        .replay_source(pb::ReplaySourceRequest {
            source: args.source,
            from: Some(from),
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            if r.partitions.is_empty() {
                println!("{}: nothing to replay from there", r.source);
            } else {
                println!(
                    "{}: {} rows and dead letters removed (bronze version {}), {} read again (version {})",
                    r.source, r.removed, r.reset_version, r.rows, r.version
                );
                for p in &r.partitions {
                    println!("  {p}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(e)),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MaintainAction {
    Optimize,
    Vacuum,
    Checkpoint,
}

#[derive(Debug, clap::Args)]
pub struct MaintainArgs {
    /// schema.table, e.g. bronze.orders or gold.fact_orders
    pub table: String,
    /// What to do
    #[arg(value_enum)]
    pub action: MaintainAction,
    #[command(flatten)]
    pub remote: Remote,
}

/// `maintain`: on the server with --server, else on the lake here.
pub async fn maintain(
    overrides: &crate::config::Overrides,
    args: MaintainArgs,
) -> anyhow::Result<ExitCode> {
    use crate::ingest::maintenance::Action;
    let action = match args.action {
        MaintainAction::Optimize => Action::Optimize,
        MaintainAction::Vacuum => Action::Vacuum,
        MaintainAction::Checkpoint => Action::Checkpoint,
    };
    if args.remote.url().is_none() {
        let settings = super::settings(overrides)?;
        let lake = crate::lake::Lake::open(&settings.lake)?;
        let Some((schema, table)) = args.table.split_once('.') else {
            anyhow::bail!("table {:?}: give schema.name", args.table);
        };
        let summary =
            crate::ingest::maintenance::apply(&lake, schema, table, action, &settings.maintenance)
                .await?;
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    use pb::maintain_request::Action as A;
    let mut client = connect(&args.remote).await?;
    let wire = match action {
        Action::Optimize => A::Optimize,
        Action::Vacuum => A::Vacuum,
        Action::Checkpoint => A::Checkpoint,
    };
    match client
        .maintain(pb::MaintainRequest {
            table: args.table,
            action: wire as i32,
        })
        .await
    {
        Ok(r) => {
            println!("{}", r.into_inner().summary);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(e)),
    }
}

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub remote: Remote,
}

/// `reload --server`.
pub async fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.remote).await?;
    match client.reload_project(pb::ReloadProjectRequest {}).await {
        Ok(r) => {
            let r = r.into_inner();
            println!(
                "reloaded: {} models, {} views/ files",
                r.models, r.view_files
            );
            if !r.applied.is_empty() {
                println!("applied now: {}", r.applied.join(", "));
            }
            if !r.restart_required.is_empty() {
                println!(
                    "changed but read only at start (restart to apply): {}",
                    r.restart_required.join(", ")
                );
            }
            for e in &r.view_errors {
                println!("views/ ERROR {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(e)),
    }
}
