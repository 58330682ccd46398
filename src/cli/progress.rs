//! How `run` and `build` show a run, whether it runs here or on a server (`--server`):
//! a live bar on a terminal (models done, what is building, rows/s), plain lines
//! otherwise (CI logs, pipes), then the summary.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Instant;

/// The end of one model.
pub struct ModelLine<'a> {
    pub relation: &'a str,
    pub materialized: &'a str,
    /// `success`, `error` or `skipped`.
    pub status: &'a str,
    pub rows: Option<u64>,
    pub seconds: f64,
    /// The error, or why it was skipped.
    pub message: &'a str,
}

/// The result of one data test.
pub struct TestLine<'a> {
    pub name: &'a str,
    pub path: &'a str,
    /// `pass`, `fail`, `warn` or `error`.
    pub status: &'a str,
    pub failures: u64,
    pub sample: &'a str,
    pub error: String,
}

/// One test result as `test` and `build` show it.
pub fn test_text(t: &TestLine<'_>) -> String {
    match t.status {
        "error" => format!("       ERROR {} ({}): {}", t.name, t.path, t.error),
        "pass" => format!("       PASS  {}", t.name),
        other => {
            let label = if other == "warn" { "WARN " } else { "FAIL " };
            let mut out = format!(
                "       {label} {} ({}): {} failing rows",
                t.name, t.path, t.failures
            );
            for line in t.sample.lines() {
                out.push_str("\n           ");
                out.push_str(line);
            }
            out
        }
    }
}

/// The display of a run in progress.
pub struct RunDisplay {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
    building: BTreeSet<String>,
    rows_written: u64,
    started: Instant,
    errors: Vec<String>,
    ok: usize,
    skipped: usize,
}

impl RunDisplay {
    pub fn new(total: usize, threads: usize, place: &str) -> RunDisplay {
        println!("running {total} models with {threads} threads{place}");
        let bar = std::io::stdout().is_terminal().then(|| {
            let pb = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            pb
        });
        RunDisplay {
            bar,
            total,
            done: 0,
            building: BTreeSet::new(),
            rows_written: 0,
            started: Instant::now(),
            errors: Vec::new(),
            ok: 0,
            skipped: 0,
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => println!("{line}"),
        }
    }

    fn refresh(&self) {
        if let Some(b) = &self.bar {
            b.set_position(self.done as u64);
            let rate = self.rows_written as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            let now: Vec<&str> = self.building.iter().map(String::as_str).collect();
            b.set_message(format!("{} | {rate:.0} rows/s", now.join(", ")));
        }
    }

    pub fn started(&mut self, relation: &str, materialized: &str, file: &str) {
        self.building.insert(relation.to_string());
        if self.bar.is_none() {
            self.say(format!("  START {materialized} {relation} ({file})"));
        }
        self.refresh();
    }

    pub fn tested(&mut self, t: &TestLine<'_>) {
        self.say(test_text(t));
    }

    /// An `on-run-start` / `on-run-end` hook: shown as a test is; a failed one fails
    /// the run.
    pub fn hook(&mut self, h: &TestLine<'_>) {
        if h.status == "error" {
            self.errors.push(format!("{}: {}", h.name, h.error));
        }
        self.say(test_text(h));
    }

    pub fn finished(&mut self, m: &ModelLine<'_>) {
        self.done += 1;
        self.building.remove(m.relation);
        self.rows_written += m.rows.unwrap_or(0);
        let (done, total) = (self.done, self.total);
        let rows = m.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
        let line = match m.status {
            "success" => {
                self.ok += 1;
                format!(
                    "{done:>4} of {total} OK    {} {}{rows} in {:.2}s",
                    m.materialized, m.relation, m.seconds
                )
            }
            "skipped" => {
                self.skipped += 1;
                format!("{done:>4} of {total} SKIP  {} ({})", m.relation, m.message)
            }
            _ => {
                self.errors.push(m.message.to_string());
                format!(
                    "{done:>4} of {total} ERROR {} in {:.2}s",
                    m.relation, m.seconds
                )
            }
        };
        self.say(line);
        self.refresh();
    }

    /// Clears the bar and prints the summary; true when every model succeeded.
    pub fn finish(self) -> bool {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        println!(
            "\nfinished {} models in {:.2}s: {} ok, {} errors, {} skipped",
            self.total,
            self.started.elapsed().as_secs_f64(),
            self.ok,
            self.errors.len(),
            self.skipped
        );
        for e in &self.errors {
            println!("\nERROR {e}");
        }
        self.errors.is_empty() && self.skipped == 0
    }
}
