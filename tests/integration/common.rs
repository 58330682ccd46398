//! Test helpers: a real server on port 0 over a temporary lake, and test data written
//! with delta-rs directly (as another process would).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use tidepool::app::App;
use tidepool::config::{Config, Overrides, Settings};
use tokio_util::sync::CancellationToken;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    pub flight: Option<SocketAddr>,
    /// The admin API (the Flight port unless `[admin] listen` gives it its own).
    pub admin: Option<SocketAddr>,
    /// Bootstrap servers of the sources (the embedded broker when none are configured).
    pub brokers: String,
    pub lake: tempfile::TempDir,
    /// The control plane (runs, sources, reloads), for tests that hold the run slot.
    pub control: Arc<tidepool::control::Control>,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with extra config text (TOML) over a new temporary lake.
    pub async fn start(extra_toml: &str) -> TestServer {
        let lake = tempfile::tempdir().expect("tempdir");
        Self::start_on(lake, extra_toml).await
    }

    pub async fn start_on(lake: tempfile::TempDir, extra_toml: &str) -> TestServer {
        let settings = settings(lake.path(), extra_toml);
        Self::start_with(lake, settings).await
    }

    /// Starts a server with explicit settings; `lake` is only kept alive with it.
    pub async fn start_with(lake: tempfile::TempDir, settings: Settings) -> TestServer {
        let app = App::build(&settings).await.expect("app builds");
        let addr = app.pg_addr().expect("postgres enabled");
        let http = app.http_addr();
        let flight = app.flight_addr();
        let admin = app.admin_addr();
        let brokers = app.ingest().brokers().to_string();
        let control = app.control().clone();
        let token = CancellationToken::new();
        let handle = tokio::spawn(app.run(token.clone()));
        TestServer {
            addr,
            http,
            flight,
            admin,
            brokers,
            lake,
            control,
            token,
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it, returning the lake for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.lake, dir)
    }

    pub fn conn_str(&self, user: &str) -> String {
        format!(
            "host={} port={} user={user} dbname=lake",
            self.addr.ip(),
            self.addr.port()
        )
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.conn_str("tidepool")).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub async fn connect(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

pub fn settings(lake: &std::path::Path, extra_toml: &str) -> Settings {
    settings_with_root(&lake.display().to_string(), extra_toml)
}

/// Settings for a lake at any root (folder or URL); `extra_toml` may add `[lake.*]` tables.
pub fn settings_with_root(root: &str, extra_toml: &str) -> Settings {
    let http = if extra_toml.contains("[http]") {
        ""
    } else {
        "[http]\nlisten = \"127.0.0.1:0\"\n"
    };
    let flight = if extra_toml.contains("[flight]") {
        ""
    } else {
        "[flight]\nlisten = \"127.0.0.1:0\"\n"
    };
    // The repository root is itself a project (views/ would deploy into every test lake):
    // tests get an empty project folder unless they set one.
    let project = if extra_toml.contains("[project]") {
        String::new()
    } else {
        let dir = std::env::temp_dir().join("tidepool-tests-empty-project");
        std::fs::create_dir_all(&dir).expect("empty project folder");
        format!("[project]\ndir = {:?}\n", dir.display().to_string())
    };
    let postgres = if extra_toml.contains("[postgres]") {
        ""
    } else {
        "[postgres]\nlisten = \"127.0.0.1:0\"\n"
    };
    let text = format!("{postgres}{http}{flight}{project}[lake]\nroot = {root:?}\n{extra_toml}");
    let mut settings = Config::parse(&text, std::path::Path::new("test.toml"))
        .expect("config parses")
        .resolve(&Overrides::default())
        .expect("config is valid");
    // Not read from a file: a reload re-reads only the project.
    settings.config_file = None;
    settings
}

/// Writes `<lake>/<schema>/<table>` with delta-rs, as another process would.
pub async fn write_delta(lake: &std::path::Path, schema: &str, table: &str, batch: RecordBatch) {
    let path = lake.join(schema).join(table);
    std::fs::create_dir_all(&path).expect("mkdir");
    let url = url::Url::from_directory_path(&path).expect("url");
    let t = deltalake::DeltaTable::try_from_url(url)
        .await
        .expect("table");
    t.write(vec![batch]).await.expect("write");
}

/// A small orders batch: id, customer, amount.
pub fn orders(n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let ids: Int64Array = (1..=n).collect();
    let customers: StringArray = (1..=n).map(|i| Some(format!("c{}", i % 3))).collect();
    let amounts: Float64Array = (1..=n).map(|i| Some(i as f64 * 1.5)).collect();
    let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(customers), Arc::new(amounts)];
    RecordBatch::try_new(schema, cols).expect("batch")
}

/// Runs `sql` every 100 ms until `done` accepts its first row's first column (as i64), or
/// panics after `secs` seconds with the last value.
pub async fn wait_for(
    client: &tokio_postgres::Client,
    sql: &str,
    secs: u64,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut last: Option<Result<i64, String>>;
    loop {
        match client.query(sql, &[]).await {
            Ok(rows) => {
                let v: i64 = rows
                    .first()
                    .and_then(|r| r.try_get::<_, i64>(0).ok())
                    .unwrap_or(-1);
                if done(v) {
                    return v;
                }
                last = Some(Ok(v));
            }
            Err(e) => last = Some(Err(e.to_string())),
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {sql}: last {last:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A self-signed certificate for `localhost` written into `dir`, and the `[tls]` config
/// text that uses it.
pub fn self_signed_tls(dir: &std::path::Path) -> (rcgen::CertifiedKey<rcgen::KeyPair>, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    (cert, toml)
}

/// The real `tidepool serve` process (the binary, its own runtime and stack sizes) over a
/// temporary lake; killed when dropped.
pub struct ServeProcess {
    pub pg: SocketAddr,
    pub flight: SocketAddr,
    pub dir: tempfile::TempDir,
    child: tokio::process::Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServeProcess {
    /// Starts `tidepool serve` with `extra_toml` after the listeners' sections; waits
    /// until the Postgres port accepts connections.
    pub async fn start(extra_toml: &str) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        let (pg_port, flight_port) = (free_port(), free_port());
        let config = dir.path().join("tidepool.toml");
        std::fs::write(
            &config,
            format!(
                "[lake]\nroot = {:?}\n[postgres]\nlisten = \"127.0.0.1:{pg_port}\"\n\
                 [http]\nenabled = false\n[flight]\nlisten = \"127.0.0.1:{flight_port}\"\n\
                 [admin]\ndisabled = true\n[project]\ndir = {:?}\n{extra_toml}",
                dir.path().join("lake").display().to_string(),
                dir.path().display().to_string(),
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .args(["serve", "--config", &config.display().to_string()])
            .current_dir(dir.path())
            .env(
                "RUST_BACKTRACE",
                std::env::var("TIDEPOOL_FUZZ_BACKTRACE").unwrap_or_else(|_| "0".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tidepool serve starts");
        let pg: SocketAddr = format!("127.0.0.1:{pg_port}").parse().unwrap();
        let up = std::time::Instant::now();
        while tokio::net::TcpStream::connect(pg).await.is_err() {
            assert!(
                up.elapsed() < std::time::Duration::from_secs(30),
                "server did not listen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        ServeProcess {
            pg,
            flight: format!("127.0.0.1:{flight_port}").parse().unwrap(),
            dir,
            child,
        }
    }

    pub fn conn_str(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{password}' dbname=lake",
            self.pg.port()
        )
    }

    /// CPU seconds (user and system) the process has used so far, from `/proc`.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.id().expect("the server runs");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the parenthesized command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// Resident memory of the process in MiB, from `/proc`.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS")
    }

    /// Peak resident memory in MiB since start or [`ServeProcess::reset_peak`].
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM")
    }

    /// Resets the peak resident memory to the current one (`clear_refs`, see proc(5)).
    pub fn reset_peak(&self) {
        let pid = self.child.id().expect("the server runs");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    }

    /// A `kB` line of `/proc/<pid>/status`, in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let pid = self.child.id().expect("the server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
        kib / 1024.0
    }

    /// Sends SIGTERM and waits up to `bound` for the process to exit; how long it took.
    pub async fn terminate(&mut self, bound: std::time::Duration) -> Option<std::time::Duration> {
        let pid = self.child.id().expect("the server runs");
        let sent = std::time::Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::timeout(bound, self.child.wait())
            .await
            .ok()
            .map(|_| sent.elapsed())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process and returns its log (stderr); fails the test if it held a panic
    /// or a stack overflow.
    pub async fn stop_clean(mut self, context: &str) -> String {
        let _ = self.child.start_kill();
        let out = self.child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for bad in ["panicked", "overflowed its stack", "fatal runtime error"] {
            assert!(
                !stderr.contains(bad),
                "{context}: the server log holds {bad:?}:\n{}",
                stderr
                    .lines()
                    .skip_while(|l| !l.contains(bad))
                    .take(60)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        stderr
    }
}

/// The first value of the first row of a simple query ("NULL" for NULL).
pub async fn first(c: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let messages = c.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or("NULL").to_string())
            }
            _ => None,
        })
        .unwrap_or_default())
}

/// The rows of a simple query, each as its values joined by `|` ("NULL" for NULL).
pub fn rows_text(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// Runs psql against the server at `addr` as `tidepool`, one `-c` per command, stopping
/// at the first error; returns whether it succeeded and its stdout and stderr.
pub async fn psql_run(addr: std::net::SocketAddr, commands: &[String]) -> (bool, String, String) {
    let commands = commands.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("psql");
        cmd.args([
            "-X",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-U",
            "tidepool",
            "-d",
            "lake",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        cmd.output()
            .expect("psql is installed (the test script installs it)")
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs `tests/python/<script>` with the test virtualenv's Python (installed by
/// scripts/test.sh) and `args`; asserts it succeeded and printed "<name>: ok" for each
/// of `oks`.
/// Runs `script` against a fresh server as a password user (`HOST PORT USER PASSWORD`).
pub async fn run_python_as_user(script: &str, oks: &[&str]) {
    run_python_as_user_with(None, script, oks).await;
}

/// [`run_python_as_user`] with another interpreter (`/usr/bin/python3` for clients
/// Debian packages, such as pgcli); `None` is the test venv's.
pub async fn run_python_as_user_with(python: Option<&str>, script: &str, oks: &[&str]) {
    let server =
        TestServer::start("[[users]]\nname = \"loader\"\npassword = \"l0ader pw\"\n").await;
    let args = [
        server.addr.ip().to_string(),
        server.addr.port().to_string(),
        "loader".to_string(),
        "l0ader pw".to_string(),
    ];
    run_script(python, script, &args, oks).await;
}

pub async fn run_python(script: &str, args: &[String], oks: &[&str]) {
    run_script(None, script, args, oks).await;
}

async fn run_script(python: Option<&str>, script: &str, args: &[String], oks: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = python
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs the Python clients",
        python.display()
    );
    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/python").join(script))
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in oks {
        assert!(stdout.contains(&format!("{name}: ok")), "{stdout}");
    }
}
