//! The local-disk object store, with Delta logs listed at the cost of what is new.
//!
//! object_store's `LocalFileSystem` lists a folder with walkdir following links, which
//! stats every entry (and stats a listed file twice more), offset or not. A table's
//! `_delta_log/` gains a file per commit and is listed on every version change, so after
//! a few thousand small transactions each read paid thousands of `statx` calls and cross-
//! thread hops in delta-kernel's blocking listing. [`LocalLogs`] answers listings of a
//! `_delta_log` folder from the directory entries alone (names and types come with them),
//! skips names at or before the offset, and asks for the metadata of the rest only. Any
//! other listing, and a log folder holding subfolders or links, goes to `LocalFileSystem`
//! unchanged, as does every read and write. The lake's transaction records
//! (`_tidepool/txn/`, listed by every commit of several tables) are listed the same way.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use deltalake::{DeltaResult, DeltaTableError};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreScheme, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use url::Url;

/// delta-rs's store factory for `file://` tables: [`LocalLogs`].
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalFactory;

impl ObjectStoreFactory for LocalFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (_, path) =
            ObjectStoreScheme::parse(url).map_err(|e| DeltaTableError::GenericError {
                source: Box::new(e),
            })?;
        Ok((Arc::new(LocalLogs::new()), path))
    }
}

/// `LocalFileSystem` with quick `_delta_log` listings.
#[derive(Debug)]
pub(crate) struct LocalLogs {
    inner: Arc<LocalFileSystem>,
}

impl std::fmt::Display for LocalLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalLogs({})", self.inner)
    }
}

/// What reading a log folder's entries found.
enum Entries {
    /// The files after the offset, sorted by name, with their metadata.
    Files(Vec<(String, std::fs::Metadata)>),
    /// Something this module does not list itself (a subfolder, a link, a name that is not
    /// UTF-8, a missing folder): `LocalFileSystem` lists the folder.
    Other,
}

/// The object metadata `LocalFileSystem` reports for a file (its ETag is inode, mtime in
/// microseconds and size, in hex).
fn object_meta(location: Path, meta: &std::fs::Metadata) -> ObjectMeta {
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let micros = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    ObjectMeta {
        location,
        last_modified: modified.into(),
        size: meta.len(),
        e_tag: Some(format!("{inode:x}-{micros:x}-{:x}", meta.len())),
        version: None,
    }
}

impl LocalLogs {
    pub(crate) fn new() -> Self {
        LocalLogs {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }

    /// A table's `_delta_log` or the lake's transaction records (`_tidepool/txn`): flat
    /// folders of plainly named files that grow with every commit.
    fn is_log(prefix: Option<&Path>) -> bool {
        let Some(prefix) = prefix else {
            return false;
        };
        let mut parts = prefix.parts().rev();
        match (parts.next(), parts.next()) {
            (Some(last), _) if last.as_ref() == "_delta_log" => true,
            (Some(last), Some(parent)) => {
                last.as_ref() == "txn" && parent.as_ref() == crate::META_DIR
            }
            _ => false,
        }
    }

    fn list_log(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.clone();
        let offset = offset.cloned();
        stream::once(async move {
            let dir = inner.path_to_filesystem(&prefix)?;
            let (folder, after) = (prefix.to_string(), offset.as_ref().map(Path::to_string));
            let listed = tokio::task::spawn_blocking(move || entries(&dir, &folder, after))
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalLogs",
                    source: Box::new(e),
                })?;
            let Entries::Files(files) = listed else {
                return Ok(match &offset {
                    Some(o) => inner.list_with_offset(Some(&prefix), o),
                    None => inner.list(Some(&prefix)),
                });
            };
            let metas = files.into_iter().map(move |(name, meta)| {
                Ok(object_meta(prefix.clone().join(name.as_str()), &meta))
            });
            Ok(stream::iter(metas).boxed())
        })
        .map(
            |listing: Result<BoxStream<'static, Result<ObjectMeta>>>| match listing {
                Ok(s) => s,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            },
        )
        .flatten()
        .boxed()
    }
}

/// The names of the files in `dir` (the object folder `folder`) whose paths sort after
/// `after` (all without it), sorted. Upload staging files (`name#3`) are not objects.
fn entries(dir: &std::path::Path, folder: &str, after: Option<String>) -> Entries {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        // A missing folder lists as empty there too.
        Err(_) => return Entries::Other,
    };
    let mut names = Vec::new();
    for entry in read {
        let Ok(entry) = entry else {
            return Entries::Other;
        };
        match entry.file_type() {
            Ok(t) if t.is_file() => {}
            _ => return Entries::Other,
        }
        let Ok(name) = entry.file_name().into_string() else {
            return Entries::Other;
        };
        if is_staging(&name)
            || after
                .as_ref()
                .is_some_and(|a| format!("{folder}/{name}") <= *a)
        {
            continue;
        }
        match entry.metadata() {
            Ok(meta) => names.push((name, meta)),
            // Deleted since the folder was read: not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Entries::Other,
        }
    }
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Entries::Files(names)
}

/// `LocalFileSystem` writes `name#<n>` and renames it into place.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[async_trait]
impl ObjectStore for LocalLogs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix {
            Some(p) if Self::is_log(prefix) => self.list_log(p, None),
            _ => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix {
            Some(p) if Self::is_log(prefix) => self.list_log(p, Some(offset)),
            _ => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{ObjectMeta, ObjectStore};

    use super::LocalLogs;

    async fn listed(
        store: &dyn ObjectStore,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> Vec<ObjectMeta> {
        let s = match offset {
            Some(o) => store.list_with_offset(Some(prefix), o),
            None => store.list(Some(prefix)),
        };
        let mut out: Vec<ObjectMeta> = s.try_collect().await.unwrap();
        out.sort_by(|a, b| a.location.cmp(&b.location));
        out
    }

    /// Listings agree with `LocalFileSystem`'s, metadata included, with and without
    /// offsets, for a plain log folder, one with a subfolder and a missing one.
    #[tokio::test]
    async fn lists_what_local_file_system_lists() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t/_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        for v in 0..12 {
            std::fs::write(log.join(format!("{v:020}.json")), "{}").unwrap();
        }
        std::fs::write(log.join("00000000000000000010.checkpoint.parquet"), "x").unwrap();
        std::fs::write(log.join("_last_checkpoint"), "{}").unwrap();
        std::fs::write(log.join("00000000000000000012.json#1"), "staging").unwrap();
        let prefix = Path::from_absolute_path(&log).unwrap();
        let ours = LocalLogs::new();
        let theirs = LocalFileSystem::new();
        let offsets = [
            None,
            Some(prefix.clone().join("00000000000000000009.json")),
            Some(prefix.clone().join("00000000000000000011.json")),
            Some(prefix.clone().join("_last_checkpoint")),
            Some(Path::from("a")),
            Some(Path::from("zzz")),
        ];
        for offset in &offsets {
            let a = listed(&ours, &prefix, offset.as_ref()).await;
            let b = listed(&theirs, &prefix, offset.as_ref()).await;
            assert_eq!(a, b, "offset {offset:?}");
        }
        assert_eq!(listed(&ours, &prefix, None).await.len(), 14);
        assert_eq!(listed(&ours, &prefix, offsets[2].as_ref()).await.len(), 1);

        std::fs::create_dir_all(log.join("_commits")).unwrap();
        std::fs::write(log.join("_commits/x.json"), "{}").unwrap();
        let a = listed(&ours, &prefix, offsets[1].as_ref()).await;
        assert_eq!(a, listed(&theirs, &prefix, offsets[1].as_ref()).await);
        assert!(
            a.iter()
                .any(|m| m.location.as_ref().ends_with("_commits/x.json"))
        );

        let missing = Path::from_absolute_path(dir.path().join("u/_delta_log")).unwrap();
        assert!(listed(&ours, &missing, None).await.is_empty());
    }
}
