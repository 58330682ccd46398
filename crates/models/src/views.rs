//! The `views/` folder: files `views/<schema>/*.sql` holding `CREATE [OR REPLACE] VIEW` and
//! `CREATE [OR REPLACE] PROCEDURE` statements, deployed into the lake by `serve` (at start
//! and again whenever a file changes) and by `tidepool run` / `build` after the models.
//!
//! A file that fails is reported with its path, the line of the failing statement and the
//! reason, and does not stop the others. Files may read each other's views: a file that
//! fails because a relation does not exist yet is retried after the others, until a round
//! deploys nothing new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tokio_util::sync::CancellationToken;

use tidepool_engine::{Engine, ErrorKind, QueryControl};

/// One file of `views/`.
#[derive(Debug, Clone)]
pub struct ViewFile {
    /// Relative to the project folder, `/`-separated: `views/gold/orders.sql`.
    pub path: String,
    /// The folder under `views/`: the schema of unqualified names.
    pub schema: String,
    pub text: String,
}

/// What deploying one file did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub path: String,
    /// `CREATE VIEW` / `CREATE PROCEDURE` statements that succeeded.
    pub statements: usize,
    /// `path:line: reason` of the first failing statement.
    pub error: Option<String>,
}

/// How often `serve` retries files that failed to deploy.
const RETRY: Duration = Duration::from_secs(3);

/// The files of `<dir>/views/<schema>/*.sql`, sorted by path.
pub fn view_files(dir: &Path) -> Vec<ViewFile> {
    let root = dir.join("views");
    let mut out = Vec::new();
    let Ok(schemas) = std::fs::read_dir(&root) else {
        return out;
    };
    for s in schemas.flatten() {
        let Some(schema) = s.file_name().to_str().map(str::to_lowercase) else {
            continue;
        };
        if !s.path().is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(s.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("sql") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let name = f.file_name().to_string_lossy().to_string();
            out.push(ViewFile {
                path: format!("views/{schema}/{name}"),
                schema: schema.clone(),
                text,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Deploys `files`, retrying the ones that read a relation not there yet while rounds
/// make progress. One entry per file, in file order.
pub async fn deploy(engine: &Arc<Engine>, files: &[ViewFile]) -> Vec<Deployed> {
    let mut results: BTreeMap<usize, Deployed> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..files.len()).collect();
    loop {
        let mut waiting = Vec::new();
        let mut progress = false;
        for &i in &pending {
            let (d, missing) = deploy_file(engine, &files[i]).await;
            if d.error.is_none() {
                progress = true;
            } else if missing {
                waiting.push(i);
            }
            results.insert(i, d);
        }
        if waiting.is_empty() || !progress {
            break;
        }
        pending = waiting;
    }
    results.into_values().collect()
}

/// Line (1-based) of the start of each statement of `text`.
fn statement_lines(text: &str) -> Vec<u64> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location() else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let mut at_start = true;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => {}
            Token::SemiColon => at_start = true,
            Token::Word(w) if at_start && w.keyword == Keyword::CREATE => {
                lines.push(t.span.start.line);
                at_start = false;
            }
            _ => at_start = false,
        }
    }
    lines
}

/// Deploys one file; the flag is true when it failed for a relation that does not exist.
async fn deploy_file(engine: &Arc<Engine>, f: &ViewFile) -> (Deployed, bool) {
    let mut d = Deployed {
        path: f.path.clone(),
        statements: 0,
        error: None,
    };
    let lines = statement_lines(&f.text);
    let mut session = engine.session("tidepool");
    let fail = |line: Option<u64>, why: String| match line {
        Some(l) => format!("{}:{l}: {why}", f.path),
        None => format!("{}: {why}", f.path),
    };
    let control = QueryControl::new(CancellationToken::new(), None);
    let schema = format!("CREATE SCHEMA IF NOT EXISTS {}", f.schema);
    if let Ok(mut s) = session.parse(&schema)
        && let Some(stmt) = s.pop()
        && let Err(e) = session.execute(stmt, None, &control).await
    {
        d.error = Some(fail(None, e.message()));
        return (d, false);
    }
    if let Err(e) = session.set("search_path", &f.schema) {
        d.error = Some(fail(None, e.message()));
        return (d, false);
    }
    let statements = match session.parse(&f.text) {
        Ok(s) => s,
        Err(e) => {
            d.error = Some(fail(None, e.message()));
            return (d, false);
        }
    };
    for (k, stmt) in statements.into_iter().enumerate() {
        let line = lines.get(k).copied();
        let result = match &stmt {
            DFStatement::Statement(s)
                if matches!(s.as_ref(), Statement::CreateProcedure { .. }) =>
            {
                session.create_procedure(s, Some(&f.path)).await.map(|_| ())
            }
            DFStatement::Statement(s) if matches!(s.as_ref(), Statement::CreateView(_)) => {
                session.execute(stmt, None, &control).await.map(|_| ())
            }
            other => {
                d.error = Some(fail(
                    line,
                    format!(
                        "views/ files hold CREATE VIEW and CREATE PROCEDURE statements, not {}",
                        other
                            .to_string()
                            .split_whitespace()
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ));
                return (d, false);
            }
        };
        match result {
            Ok(()) => d.statements += 1,
            Err(e) => {
                let missing = matches!(
                    e.kind(),
                    ErrorKind::UndefinedTable | ErrorKind::UndefinedSchema
                ) || e.message().contains("not found");
                d.error = Some(fail(line, e.message()));
                return (d, missing);
            }
        }
    }
    (d, false)
}

/// Log lines for deployment results.
pub fn report(results: &[Deployed]) {
    for r in results {
        match &r.error {
            None => tracing::info!(file = %r.path, statements = r.statements, "views: deployed"),
            Some(e) => tracing::warn!("views: {e}"),
        }
    }
}

/// Modification times of the files under `views/`, to notice changes.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let Ok(schemas) = std::fs::read_dir(dir.join("views")) else {
        return out;
    };
    for s in schemas.flatten() {
        let Ok(files) = std::fs::read_dir(s.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Ok(m) = f.metadata().and_then(|m| m.modified()) {
                out.insert(f.path(), m);
            }
        }
    }
    out
}

/// `serve`'s part: deploys the folder now, then again (the changed and the failed files)
/// each time a file under `views/` changes, until `cancel`.
pub async fn serve(engine: Arc<Engine>, dir: PathBuf, cancel: CancellationToken) {
    let mut seen = fingerprint(&dir);
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    // Files that failed, with their error: retried every few seconds (a procedure over a
    // table the schedule has not built yet deploys once it exists), logged again only
    // when the error changes.
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut first = true;
    loop {
        let files = view_files(&dir);
        let todo: Vec<ViewFile> = files
            .into_iter()
            .filter(|f| {
                first || texts.get(&f.path) != Some(&f.text) || failed.contains_key(&f.path)
            })
            .collect();
        if !todo.is_empty() {
            let results = deploy(&engine, &todo).await;
            let fresh: Vec<Deployed> = results
                .iter()
                .filter(|r| match (&r.error, failed.get(&r.path)) {
                    (Some(e), Some(before)) => e != before,
                    _ => true,
                })
                .cloned()
                .collect();
            report(&fresh);
            failed = results
                .into_iter()
                .filter_map(|r| r.error.map(|e| (r.path, e)))
                .collect();
            for f in todo {
                texts.insert(f.path, f.text);
            }
        }
        first = false;
        // Wait for a change, or retry what failed.
        let mut waited = Duration::ZERO;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            waited += Duration::from_millis(500);
            let now = fingerprint(&dir);
            if now != seen {
                seen = now;
                break;
            }
            if !failed.is_empty() && waited >= RETRY {
                break;
            }
        }
    }
}
