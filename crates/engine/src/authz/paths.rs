//! Paths and URLs compared as locations: a host path becomes a `file://` URL with `.` and
//! `..` resolved, a URL is parsed (which resolves them too), so `/data/in/../../etc` is
//! `/etc` before any prefix is compared. A prefix covers a location when scheme and host
//! match and the location's path starts with the prefix's path at a `/` boundary.

use url::Url;

/// A normalized path or URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(Url);

impl Location {
    /// Parses a host path (absolute or relative to the working folder) or a URL.
    pub fn parse(text: &str) -> Result<Location, String> {
        let text = text.trim();
        let url = if text.contains("://") {
            Url::parse(text).map_err(|e| format!("\"{text}\" is not a valid URL: {e}"))?
        } else {
            let path = std::path::Path::new(text);
            let abs = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("\"{text}\": {e}"))?
                    .join(path)
            };
            let mut out = std::path::PathBuf::new();
            for c in abs.components() {
                use std::path::Component;
                match c {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other.as_os_str()),
                }
            }
            let mut url =
                Url::from_file_path(&out).map_err(|_| format!("\"{text}\" is not a valid path"))?;
            if text.ends_with('/') && !url.path().ends_with('/') {
                let p = format!("{}/", url.path());
                url.set_path(&p);
            }
            url
        };
        Ok(Location(url))
    }

    fn same_store(&self, other: &Location) -> bool {
        self.0.scheme().eq_ignore_ascii_case(other.0.scheme())
            && self.0.host_str() == other.0.host_str()
            && self.0.port() == other.0.port()
    }

    /// Whether this location is `prefix` or below it.
    pub fn within(&self, prefix: &Location) -> bool {
        if !self.same_store(prefix) {
            return false;
        }
        let base = prefix.0.path().trim_end_matches('/');
        let path = self.0.path();
        path == base || path.starts_with(&format!("{base}/")) || base.is_empty()
    }

    /// The path segments below `root` (a lake root URL), when this location is in it.
    pub fn inside(&self, root: &str) -> Option<Vec<String>> {
        let root = Location::parse(root).ok()?;
        if !self.within(&root) {
            return None;
        }
        let base = root.0.path().trim_end_matches('/').len();
        let rest = &self.0.path()[base..];
        Some(
            rest.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    percent_decode(s)
                        .unwrap_or_else(|| s.to_string())
                        .to_lowercase()
                })
                .collect(),
        )
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(path: &str, prefix: &str) -> bool {
        Location::parse(path)
            .unwrap()
            .within(&Location::parse(prefix).unwrap())
    }

    #[test]
    fn prefixes_cover_paths_at_folder_boundaries() {
        assert!(within("/data/in/a.csv", "/data/in/"));
        assert!(within("/data/in/a.csv", "/data/in"));
        assert!(within("file:///data/in/x/y.parquet", "/data/in/"));
        assert!(!within("/data/inbox/a.csv", "/data/in"));
        assert!(!within("/data/in/../secret", "/data/in/"));
        assert!(!within("file:///data/in/%2e%2e/secret", "/data/in/"));
        assert!(within("s3://b/in/k", "s3://b/in/"));
        assert!(!within("s3://b2/in/k", "s3://b/in/"));
        assert!(!within("gs://b/in/k", "s3://b/in/"));
        assert!(within("s3://b/anything", "s3://b/"));
    }

    #[test]
    fn segments_inside_the_lake() {
        let l = Location::parse("/lake/Gold/t/part-0.parquet").unwrap();
        assert_eq!(
            l.inside("file:///lake/").unwrap(),
            vec!["gold", "t", "part-0.parquet"]
        );
        assert!(l.inside("file:///other/").is_none());
    }
}
