//! The object store a transaction reads and writes Delta logs through.
//!
//! For each table the transaction has touched, the store shows that table's `_delta_log/`
//! as it was at the transaction's snapshot (the real log up to the pinned version: later
//! commits by others are hidden) plus the transaction's own staged commits, which live in
//! memory. delta-rs writes a commit with a put-if-absent of `_delta_log/<version>.json`;
//! here that put lands in memory, so every delta-rs operation (write, delete, update,
//! merge) runs unchanged inside a transaction, sees the transaction's earlier statements,
//! and publishes nothing. Data files are written to and read from the real store: they
//! are invisible to everyone until a commit names them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::RwLock;

/// A table's log as the transaction sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pin {
    /// The newest real version the transaction reads.
    pub base: u64,
}

/// The real store with the logs of pinned tables overlaid.
#[derive(Debug)]
pub(crate) struct Overlay {
    real: Arc<dyn ObjectStore>,
    /// Staged log files, at their real paths.
    staged: InMemory,
    /// `<table>/_delta_log` path -> pin.
    pins: RwLock<HashMap<String, Pin>>,
    /// The visible real files of a pinned log, by listing prefix: files up to a pin never
    /// change, so each pinned log is listed from storage once.
    listed: Arc<RwLock<HashMap<String, Vec<ObjectMeta>>>>,
}

impl std::fmt::Display for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransactionOverlay({})", self.real)
    }
}

/// Where a path falls relative to the pinned logs.
enum Place {
    /// Not inside a pinned table's log.
    Outside,
    /// `<log>/<file>` of a pinned table.
    Log { pin: Pin, file: String },
}

/// The version a log file belongs to (`00000000000000000012.json`,
/// `...12.checkpoint.parquet`, `...12.crc`), if its name starts with one.
pub(crate) fn file_version(file: &str) -> Option<u64> {
    let digits = file.get(..20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `<log>/00000000000000000012.json` for `version`.
pub(crate) fn commit_path(log: &str, version: u64) -> Path {
    Path::from(format!("{log}/{version:020}.json"))
}

impl Overlay {
    pub(crate) fn new(real: Arc<dyn ObjectStore>) -> Overlay {
        Overlay {
            real,
            staged: InMemory::new(),
            pins: RwLock::new(HashMap::new()),
            listed: Arc::default(),
        }
    }

    /// The store underneath.
    pub(crate) fn real(&self) -> Arc<dyn ObjectStore> {
        self.real.clone()
    }

    /// Shows `log` (a table's `_delta_log` path) as of `pin` from now on.
    pub(crate) fn pin(&self, log: &str, pin: Pin) {
        self.pins.write().insert(log.to_string(), pin);
        self.listed
            .write()
            .retain(|prefix, _| !prefix.starts_with(log));
    }

    fn place(&self, location: &Path) -> Place {
        let s = location.as_ref();
        let Some((dir, file)) = s.rsplit_once('/') else {
            return Place::Outside;
        };
        match self.pins.read().get(dir) {
            Some(pin) => Place::Log {
                pin: *pin,
                file: file.to_string(),
            },
            None => Place::Outside,
        }
    }

    /// Whether a real log file is part of the pinned snapshot.
    fn visible(pin: Pin, file: &str) -> bool {
        match file_version(file) {
            Some(v) => v <= pin.base,
            // `_last_checkpoint` may point past the pin; without it readers list the log.
            None => file != "_last_checkpoint",
        }
    }

    /// The staged commit `version` of `log`, if there is one.
    pub(crate) async fn staged_commit(&self, log: &str, version: u64) -> Result<Option<Bytes>> {
        match self.staged.get(&commit_path(log, version)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets the staged files of `log` from `version` on (a savepoint rolled back to, or
    /// the whole transaction). Returns the staged commits removed, oldest first.
    pub(crate) async fn unstage_from(&self, log: &str, version: u64) -> Result<Vec<Bytes>> {
        let prefix = Path::from(log);
        let files: Vec<ObjectMeta> = self.staged.list(Some(&prefix)).try_collect().await?;
        let mut removed = Vec::new();
        let mut files: Vec<ObjectMeta> = files
            .into_iter()
            .filter(|m| {
                let file = m.location.filename().unwrap_or_default();
                file_version(file).is_none_or(|v| v >= version)
            })
            .collect();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        for m in files {
            if m.location.as_ref().ends_with(".json")
                && file_version(m.location.filename().unwrap_or_default()).is_some()
            {
                removed.push(self.staged.get(&m.location).await?.bytes().await?);
            }
            self.staged.delete(&m.location).await?;
        }
        Ok(removed)
    }

    /// The merged listing of a pinned log under `prefix`.
    async fn list_log(
        real: Arc<dyn ObjectStore>,
        cache: Arc<RwLock<HashMap<String, Vec<ObjectMeta>>>>,
        staged: Vec<ObjectMeta>,
        prefix: Path,
        pin: Pin,
    ) -> Result<Vec<ObjectMeta>> {
        let mut seen: HashMap<Path, ObjectMeta> = HashMap::new();
        let cached = cache.read().get(prefix.as_ref()).cloned();
        let visible = match cached {
            Some(v) => v,
            None => {
                let listed: Vec<ObjectMeta> = match real.list(Some(&prefix)).try_collect().await {
                    Ok(l) => l,
                    Err(object_store::Error::NotFound { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                };
                let visible: Vec<ObjectMeta> = listed
                    .into_iter()
                    .filter(|m| Overlay::visible(pin, m.location.filename().unwrap_or_default()))
                    .collect();
                cache.write().insert(prefix.to_string(), visible.clone());
                visible
            }
        };
        for m in visible {
            seen.insert(m.location.clone(), m);
        }
        for m in staged {
            seen.insert(m.location.clone(), m);
        }
        let mut out: Vec<ObjectMeta> = seen.into_values().collect();
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// The pin of the log `prefix` lies in (or is), if any.
    fn log_of_prefix(&self, prefix: Option<&Path>) -> Option<(String, Pin)> {
        let p = prefix?.as_ref();
        let pins = self.pins.read();
        if let Some(pin) = pins.get(p) {
            return Some((p.to_string(), *pin));
        }
        let (dir, _) = p.rsplit_once('/')?;
        pins.get(dir).map(|pin| (dir.to_string(), *pin))
    }
}

fn not_found(location: &Path) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: "hidden by the transaction's snapshot".into(),
    }
}

#[async_trait]
impl ObjectStore for Overlay {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match self.place(location) {
            Place::Outside => self.real.put_opts(location, payload, opts).await,
            Place::Log { pin, file } => {
                if file.ends_with(".json") && file_version(&file).is_some_and(|v| v <= pin.base) {
                    return Err(object_store::Error::AlreadyExists {
                        path: location.to_string(),
                        source: "the version is part of the transaction's snapshot".into(),
                    });
                }
                self.staged.put_opts(location, payload, opts).await
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        match self.place(location) {
            Place::Outside => self.real.put_multipart_opts(location, opts).await,
            Place::Log { .. } => self.staged.put_multipart_opts(location, opts).await,
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.place(location) {
            Place::Outside => self.real.get_opts(location, options).await,
            Place::Log { pin, file } => match self.staged.get_opts(location, options.clone()).await
            {
                Err(object_store::Error::NotFound { .. }) if Overlay::visible(pin, &file) => {
                    self.real.get_opts(location, options).await
                }
                Err(object_store::Error::NotFound { .. }) => Err(not_found(location)),
                other => other,
            },
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Log files are never deleted inside a transaction (log cleanup runs on commit);
        // staged ones go when the transaction unstages them.
        let pins: Vec<String> = self.pins.read().keys().cloned().collect();
        let real = self.real.clone();
        locations
            .and_then(move |p| {
                let real = real.clone();
                let in_log = p
                    .as_ref()
                    .rsplit_once('/')
                    .is_some_and(|(dir, _)| pins.iter().any(|l| l == dir));
                async move {
                    if !in_log {
                        real.delete(&p).await?;
                    }
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some((log, pin)) = self.log_of_prefix(prefix) else {
            return self.real.list(prefix);
        };
        let real = self.real.clone();
        let cache = self.listed.clone();
        let prefix = prefix.cloned().unwrap_or_else(|| Path::from(log));
        let staged = self.staged.list(Some(&prefix));
        futures::stream::once(async move {
            let staged: Vec<ObjectMeta> = staged.try_collect().await?;
            Overlay::list_log(real, cache, staged, prefix, pin).await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// Listing from a version (delta-kernel lists from the last checkpoint) lists the real
    /// log from there, not the whole of it; past the pin (a view catching up with the
    /// transaction's own commits) it reads the staged files only: no real file there is
    /// visible.
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some((log, pin)) = self.log_of_prefix(prefix) else {
            return self.real.list_with_offset(prefix, offset);
        };
        let past_pin = offset
            .prefix_match(&Path::from(log.as_str()))
            .and_then(|mut rest| rest.next())
            .and_then(|file| file_version(file.as_ref()))
            .is_some_and(|v| v > pin.base);
        let offset = offset.clone();
        let staged = self.staged.list(prefix);
        if past_pin {
            return staged
                .try_filter(move |m| futures::future::ready(m.location > offset))
                .boxed();
        }
        // The real files after the offset the snapshot shows, and the staged ones.
        let real = self.real.list_with_offset(prefix, &offset);
        futures::stream::once(async move {
            let mut out: Vec<ObjectMeta> = real
                .try_filter(move |m| {
                    futures::future::ready(Overlay::visible(
                        pin,
                        m.location.filename().unwrap_or_default(),
                    ))
                })
                .try_collect()
                .await?;
            let staged: Vec<ObjectMeta> = staged.try_collect().await?;
            out.extend(staged.into_iter().filter(|m| m.location > offset));
            out.sort_by(|a, b| a.location.cmp(&b.location));
            out.dedup_by(|a, b| a.location == b.location);
            Ok::<_, object_store::Error>(futures::stream::iter(out.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let Some((_, pin)) = self.log_of_prefix(prefix) else {
            return self.real.list_with_delimiter(prefix).await;
        };
        let mut real = self.real.list_with_delimiter(prefix).await?;
        let staged = self.staged.list_with_delimiter(prefix).await?;
        real.objects
            .retain(|m| Overlay::visible(pin, m.location.filename().unwrap_or_default()));
        real.objects.extend(staged.objects);
        real.objects.sort_by(|a, b| a.location.cmp(&b.location));
        real.objects.dedup_by(|a, b| a.location == b.location);
        Ok(real)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        match (self.place(from), self.place(to)) {
            (Place::Outside, Place::Outside) => self.real.copy_opts(from, to, options).await,
            _ => Err(object_store::Error::NotSupported {
                source: "copying Delta log files inside a transaction".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hides_later_commits_and_stages_new_ones() {
        let real: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for v in 0..3u64 {
            real.put(&commit_path("t/_delta_log", v), Bytes::from("{}").into())
                .await
                .unwrap();
        }
        let o = Overlay::new(real.clone());
        o.pin("t/_delta_log", Pin { base: 1 });
        // Version 2 exists for others, not in the snapshot.
        assert!(o.get(&commit_path("t/_delta_log", 2)).await.is_err());
        // Versions up to the pin cannot be written again; the next one is staged.
        let create = PutOptions::from(object_store::PutMode::Create);
        assert!(
            o.put_opts(
                &commit_path("t/_delta_log", 1),
                Bytes::from("x").into(),
                create.clone()
            )
            .await
            .is_err()
        );
        o.put_opts(
            &commit_path("t/_delta_log", 2),
            Bytes::from("mine").into(),
            create,
        )
        .await
        .unwrap();
        let mine = o.get(&commit_path("t/_delta_log", 2)).await.unwrap();
        assert_eq!(mine.bytes().await.unwrap(), Bytes::from("mine"));
        let listed: Vec<ObjectMeta> = o
            .list(Some(&Path::from("t/_delta_log")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        // Listing from a version: past the pin only staged files answer; before it, the
        // visible real ones too.
        let log = Path::from("t/_delta_log");
        for (from, expected) in [(2u64, vec![2u64]), (1, vec![1, 2]), (3, vec![])] {
            let offset = Path::from(format!("t/_delta_log/{from:020}"));
            let listed: Vec<ObjectMeta> = o
                .list_with_offset(Some(&log), &offset)
                .try_collect()
                .await
                .unwrap();
            let versions: Vec<u64> = listed
                .iter()
                .filter_map(|m| file_version(m.location.filename()?))
                .collect();
            assert_eq!(versions, expected, "from {from}");
        }
        // The real log is untouched.
        let theirs = real.get(&commit_path("t/_delta_log", 2)).await.unwrap();
        assert_eq!(theirs.bytes().await.unwrap(), Bytes::from("{}"));
        let removed = o.unstage_from("t/_delta_log", 2).await.unwrap();
        assert_eq!(removed, vec![Bytes::from("mine")]);
        assert!(o.get(&commit_path("t/_delta_log", 2)).await.is_err());
    }
}
