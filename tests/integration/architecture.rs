//! The architecture as a test: no import cycles between the modules of any crate in the
//! workspace (Cargo already refuses cycles between crates). A file's imports are its
//! `crate::` and `super::` paths (use lines and inline paths, comments skipped), resolved
//! to the longest module that exists. An import from module A to module B is an edge
//! between the two children of their nearest common ancestor that hold them (a file in
//! `models/` using `control` is `models -> control`); a module using its own ancestors
//! or descendants is nesting, not an edge. Modules that reach each other both ways are a
//! cycle, and fails the test (issue 22 cut the seven there were; `KNOWN` is empty).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles present when the check was written (crate directory, then the modules); issue
/// 22 cut the last of them, and none may come back.
const KNOWN: &[(&str, &[&str])] = &[];

type Module = Vec<String>;

/// Every crate's source root in the workspace.
fn crate_roots() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![repo.join("src")];
    if let Ok(dirs) = std::fs::read_dir(repo.join("crates")) {
        for d in dirs.flatten() {
            if d.path().join("src").is_dir() {
                roots.push(d.path().join("src"));
            }
        }
    }
    roots.sort();
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("source folder reads")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` are `[a, b]`; `lib.rs` is the root. `main.rs` beside a
/// `lib.rs` is a crate of its own (it uses the library by name) and is left out.
fn module_of(root: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.last().map(String::as_str) {
        Some("main") if parts.len() == 1 && root.join("lib.rs").exists() => return None,
        Some("mod") | Some("lib") | Some("main") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

/// The paths that follow `prefix` at `text[at..]`: `a::b::C`, or a group
/// `{a::b, c::{d, e}}`, each as its segments.
fn paths_at(text: &str, at: usize) -> Vec<Vec<String>> {
    fn parse(chars: &[char], i: &mut usize, base: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = base;
        loop {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
            if *i < chars.len() && chars[*i] == '{' {
                *i += 1;
                loop {
                    parse(chars, i, path.clone(), out);
                    while *i < chars.len() && chars[*i].is_whitespace() {
                        *i += 1;
                    }
                    match chars.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < chars.len() && chars[*i].is_whitespace() {
                        *i += 1;
                    }
                    if chars.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if start == *i {
                out.push(path);
                return;
            }
            path.push(chars[start..*i].iter().collect());
            if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let chars: Vec<char> = text[at..].chars().take(2000).collect();
    let mut out = Vec::new();
    let mut i = 0;
    parse(&chars, &mut i, Vec::new(), &mut out);
    out
}

/// The modules one file names, with the line of each.
fn imports(text: &str, module: &Module) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = match code.find("//") {
            Some(i) if !code[..i].contains('"') => &code[..i],
            _ => code,
        };
        // The rest of the file from this line on: a `use` group may span lines.
        let offset = line.len() - line.trim_start().len();
        let rest_start = text.lines().take(n).map(|l| l.len() + 1).sum::<usize>() + offset;
        for (pos, _) in code.match_indices("crate::") {
            if pos > 0 {
                let before = code.as_bytes()[pos - 1];
                if before.is_ascii_alphanumeric() || before == b'_' || before == b'$' {
                    continue;
                }
            }
            for p in paths_at(text, rest_start + pos + "crate::".len()) {
                out.push((p, n + 1));
            }
        }
        for (pos, _) in code.match_indices("super::") {
            if pos > 0 {
                let before = code.as_bytes()[pos - 1];
                if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                    continue;
                }
            }
            // `super` of `a/b.rs` and of `a/b/mod.rs` is `a`.
            let mut base: Vec<String> = module.clone();
            base.pop();
            let mut at = rest_start + pos + "super::".len();
            while text[at..].starts_with("super::") {
                base.pop();
                at += "super::".len();
            }
            for p in paths_at(text, at) {
                let mut full = base.clone();
                full.extend(p);
                out.push((full, n + 1));
            }
        }
    }
    out
}

/// Sibling edges of one crate: (from, to) -> where.
fn edges(root: &Path) -> BTreeMap<(Module, Module), String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut modules: BTreeMap<Module, PathBuf> = BTreeMap::new();
    for f in &files {
        if let Some(m) = module_of(root, f) {
            modules.insert(m, f.clone());
        }
    }
    let mut out = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("source reads");
        for (path, line) in imports(&text, module) {
            // The longest module the path names.
            let mut target = path;
            while !target.is_empty() && !modules.contains_key(&target) {
                target.pop();
            }
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // an ancestor or a descendant
            }
            let from = module[..=common].to_vec();
            let to = target[..=common].to_vec();
            out.entry((from, to)).or_insert_with(|| {
                format!(
                    "{}:{line}",
                    file.strip_prefix(root.parent().unwrap_or(root))
                        .unwrap_or(file)
                        .display()
                )
            });
        }
    }
    out
}

/// Groups of modules that reach each other both ways.
fn cycles(edges: &BTreeMap<(Module, Module), String>) -> Vec<BTreeSet<Module>> {
    let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let reach = |start: &Module| -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(m) = stack.pop() {
            for n in next.get(m).into_iter().flatten() {
                if seen.insert((*n).clone()) {
                    stack.push(n);
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&Module> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reached: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups: Vec<BTreeSet<Module>> = Vec::new();
    for n in &nodes {
        if !reached[n].contains(*n) || groups.iter().any(|g| g.contains(*n)) {
            continue;
        }
        let group: BTreeSet<Module> = nodes
            .iter()
            .filter(|m| reached[n].contains(**m) && reached[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        groups.push(group);
    }
    groups
}

fn show(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_new_import_cycles_between_modules() {
    let mut found = Vec::new();
    let mut report = String::new();
    for root in crate_roots() {
        // The root package is `tidepool`; `crates/<name>` is `tidepool-<name>`.
        let krate = match root.parent().filter(|p| p.join("src") == root) {
            Some(p) if p.parent().is_some_and(|pp| pp.ends_with("crates")) => p
                .file_name()
                .map(|n| format!("tidepool-{}", n.to_string_lossy()))
                .unwrap_or_default(),
            _ => "tidepool".to_string(),
        };
        let edges = edges(&root);
        for group in cycles(&edges) {
            let names: BTreeSet<String> = group.iter().map(show).collect();
            let known = KNOWN.iter().any(|(k, members)| {
                *k == krate && names.iter().all(|n| members.contains(&n.as_str()))
            });
            report.push_str(&format!(
                "{} {krate}: {}\n",
                if known { "known" } else { "NEW" },
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            for ((from, to), at) in &edges {
                if group.contains(from) && group.contains(to) {
                    report.push_str(&format!("    {} -> {} ({at})\n", show(from), show(to)));
                }
            }
            if !known {
                found.push(names);
            }
        }
    }
    eprintln!("{report}");
    assert!(found.is_empty(), "new import cycles:\n{report}");
}

/// What each layer's crate may not depend on, anywhere in its tree: the engine serves
/// every protocol and knows none (the PostgreSQL dialect, which needs pgwire's types, is
/// `tidepool-pgcompat`, plugged in through `tidepool_engine::Extension`); ingestion
/// knows neither the SQL engine nor a protocol; models know the engine and the lake but
/// not Kafka, the PostgreSQL dialect or the scheduler (`croner` is `control`'s); the
/// control plane drives engine, ingest and models and knows no protocol (the admin gRPC
/// service translates onto it); the server composes the layers and serves them, and
/// parses no command line (that is the root `tidepool` crate's).
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("tidepool-engine", &["tidepool-pgcompat"]),
    ("tidepool-ingest", &["tidepool-engine"]),
    ("tidepool-lake", &["tidepool-engine", "rdkafka"]),
    (
        "tidepool-models",
        &["tidepool-pgcompat", "tidepool-ingest", "rdkafka", "croner"],
    ),
    ("tidepool-control", &["tidepool-pgcompat"]),
    ("tidepool-server", &["tidepool", "clap", "indicatif"]),
];

/// The wire-protocol crates, which none of the layers above may use: only the server's
/// adapters do.
const PROTOCOLS: &[&str] = &["pgwire", "tonic", "axum", "arrow-flight", "arrow-pg"];

#[test]
fn layers_depend_only_on_what_they_may() {
    for (krate, forbidden) in FORBIDDEN {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {krate} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.contains("deltalake v"), "unexpected tree:\n{tree}");
        // The server is where the protocols live.
        let protocols = if *krate == "tidepool-server" {
            &[][..]
        } else {
            PROTOCOLS
        };
        for name in protocols.iter().chain(forbidden.iter()) {
            let found: Vec<&str> = tree
                .lines()
                .filter(|l| l.split(' ').next() == Some(*name))
                .collect();
            assert!(found.is_empty(), "{krate} depends on {name}: {found:?}");
        }
    }
}
