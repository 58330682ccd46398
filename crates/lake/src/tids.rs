//! PostgreSQL's `ctid` for lake tables, and DELETE by it.
//!
//! A row of a Delta table is addressed by its data file and its position in that file.
//! A tuple id `(block, offset)` carries both: each file the process has named gets a
//! number the first time a `ctid` is read from it (kept for the life of the process,
//! never reused), and owns [`BLOCKS_PER_FILE`] blocks of [`ROWS_PER_BLOCK`] rows, so
//! `block = file * BLOCKS_PER_FILE + position / ROWS_PER_BLOCK` and
//! `offset = position % ROWS_PER_BLOCK + 1` (offsets start at 1, as heap offsets do).
//! DuckDB's postgres extension reads `ctid` with the rows it is about to delete or
//! update and sends them back in batches (`DELETE ... WHERE ctid IN ('(0,1)', ...)`,
//! `UPDATE ... FROM tmp WHERE t.ctid = tmp.id::tid`), inside one transaction.
//!
//! A tid stays valid while its row lives: a table with deletion vectors keeps its files
//! (positions do not move); without them, a DELETE by tid copies each file without the
//! rows deleted and records where the file went ([`Moved`]), so the next batch of tids,
//! read before the copy, still finds its rows. A tid whose row is gone deletes nothing,
//! as in PostgreSQL. Numbers are not kept across restarts: like PostgreSQL's after a
//! `VACUUM FULL`, a tid read before a restart does not name a row after it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::RecordBatchWriter;
use parking_lot::Mutex;
use roaring::RoaringTreemap;

use crate::{Lake, LakeError};

/// Rows per block: offsets run from 1 to 65535.
pub const ROWS_PER_BLOCK: u64 = 65_535;
/// Blocks per data file: a file of up to 268,431,360 rows is addressable.
pub const BLOCKS_PER_FILE: u64 = 4_096;
/// Files per table a process can number.
pub const MAX_FILES: u64 = u32::MAX as u64 / BLOCKS_PER_FILE;

/// A tuple id, `(block,offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid {
    pub block: u32,
    pub offset: u16,
}

impl Tid {
    /// The tid of the row at `position` of file number `file`; `None` past what a tid
    /// can address.
    pub fn of(file: u32, position: u64) -> Option<Tid> {
        let block = file as u64 * BLOCKS_PER_FILE + position / ROWS_PER_BLOCK;
        if position / ROWS_PER_BLOCK >= BLOCKS_PER_FILE || block > u32::MAX as u64 {
            return None;
        }
        Some(Tid {
            block: block as u32,
            offset: (position % ROWS_PER_BLOCK + 1) as u16,
        })
    }

    /// PostgreSQL's text form, `(0,1)`, read as `tidin` reads it: what comes before the
    /// `(` and after the `)` is ignored (DuckDB sends `'(0,1)'` with its quotes), blanks
    /// around the numbers are allowed.
    pub fn parse(text: &str) -> Option<Tid> {
        let (_, rest) = text.split_once('(')?;
        let (inner, _) = rest.split_once(')')?;
        let (block, offset) = inner.split_once(',')?;
        Some(Tid {
            block: block.trim().parse().ok()?,
            offset: offset.trim().parse().ok()?,
        })
    }

    /// The file number and the position in it; `None` for offset 0 (no row).
    pub fn row(&self) -> Option<(u32, u64)> {
        let offset = self.offset as u64;
        if offset == 0 || offset > ROWS_PER_BLOCK {
            return None;
        }
        let block = self.block as u64;
        Some((
            (block / BLOCKS_PER_FILE) as u32,
            (block % BLOCKS_PER_FILE) * ROWS_PER_BLOCK + offset - 1,
        ))
    }

    /// The binary form (`tidsend`): block then offset, big-endian.
    pub fn to_bytes(self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out[..4].copy_from_slice(&self.block.to_be_bytes());
        out[4..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.block, self.offset)
    }
}

/// Where a file's rows went when a DELETE by tid copied it.
#[derive(Debug)]
struct Moved {
    /// Positions the copy left out.
    dropped: RoaringTreemap,
    /// The copy, `None` when no row was left.
    to: Option<String>,
}

/// The numbered files of one table.
#[derive(Debug, Default)]
struct Files {
    numbers: HashMap<String, u32>,
    paths: Vec<String>,
    /// Files copied by a DELETE by tid, and where their rows went.
    moved: HashMap<String, Moved>,
    /// Each copy's original.
    copied_from: HashMap<String, String>,
}

/// How a scan names the rows of one data file: a copy made by a DELETE by tid gives its
/// rows the tids they had in the file it was copied from, as PostgreSQL's rows keep
/// theirs when others are deleted.
#[derive(Debug, Clone)]
pub struct FileTids {
    /// The number of the first file of the chain of copies.
    number: u32,
    /// The positions each copy left out, newest copy first.
    chain: Vec<RoaringTreemap>,
}

impl FileTids {
    /// The tid of the row at `position` of the file; `None` past what a tid addresses.
    pub fn tid(&self, mut position: u64) -> Option<Tid> {
        for dropped in &self.chain {
            position = nth_kept(dropped, position);
        }
        Tid::of(self.number, position)
    }
}

/// The `n`th (from 0) position not in `dropped`.
fn nth_kept(dropped: &RoaringTreemap, n: u64) -> u64 {
    // Kept positions up to x: x + 1 - rank(x), which grows with x; the answer lies in
    // [n, n + |dropped|].
    let (mut lo, mut hi) = (n, n + dropped.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if mid + 1 - dropped.rank(mid) > n {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

impl Files {
    /// Where the row at `position` of `path` is now, following copies until a file
    /// `live` holds; `None` when it was deleted or its file is gone.
    fn locate(
        &self,
        mut path: String,
        mut position: u64,
        live: &impl Fn(&str) -> bool,
    ) -> Option<(String, u64)> {
        // A chain is as long as the DELETEs of one transaction on one file.
        for _ in 0..=self.moved.len() {
            if live(&path) {
                return Some((path, position));
            }
            let moved = self.moved.get(&path)?;
            if moved.dropped.contains(position) {
                return None;
            }
            position -= moved.dropped.rank(position);
            path = moved.to.clone()?;
        }
        None
    }
}

/// The files ctids have named, per table.
#[derive(Debug, Default)]
pub(crate) struct TidFiles {
    tables: Mutex<HashMap<(String, String), Files>>,
}

impl TidFiles {
    fn file(&self, schema: &str, table: &str, path: &str) -> Result<FileTids, LakeError> {
        let mut tables = self.tables.lock();
        let files = tables
            .entry((schema.to_string(), table.to_string()))
            .or_default();
        let mut path = path;
        let mut chain = Vec::new();
        while let Some(original) = files.copied_from.get(path) {
            if let Some(m) = files.moved.get(original) {
                chain.push(m.dropped.clone());
            }
            path = original;
            if chain.len() > files.copied_from.len() {
                break;
            }
        }
        let path = path.to_string();
        Ok(FileTids {
            number: Self::number(files, schema, table, &path)?,
            chain,
        })
    }

    fn number(files: &mut Files, schema: &str, table: &str, path: &str) -> Result<u32, LakeError> {
        if let Some(n) = files.numbers.get(path) {
            return Ok(*n);
        }
        let n = files.paths.len() as u64;
        if n >= MAX_FILES {
            return Err(LakeError::Unsupported(format!(
                "ctid: {schema}.{table} has had more than {MAX_FILES} data files in this \
                 process; restart to number them again"
            )));
        }
        files.paths.push(path.to_string());
        files.numbers.insert(path.to_string(), n as u32);
        Ok(n as u32)
    }
}

/// The rows deletion vectors mark deleted, per data file (path relative to the table's
/// root): what a scan, which skips them, needs to give the rows it returns their
/// positions in the file.
#[derive(Debug, Default)]
pub struct DeletedRows(HashMap<String, RoaringTreemap>);

impl DeletedRows {
    /// The vectors of `table`'s files.
    pub async fn of(table: &DeltaTable) -> Result<DeletedRows, LakeError> {
        let snapshot = table.snapshot()?;
        let root = table.table_url().to_string();
        let mut out = HashMap::new();
        for view in snapshot.log_data().iter() {
            if let Some(d) = view.deletion_vector_descriptor() {
                let rows = crate::vectors::read(table.object_store().as_ref(), &root, &d).await?;
                out.insert(view.path().to_string(), rows);
            }
        }
        Ok(DeletedRows(out))
    }

    /// The first position of `path`, at or after `from`, that no vector marks deleted.
    pub fn live_from(&self, path: &str, mut from: u64) -> u64 {
        if let Some(deleted) = self.0.get(path) {
            while deleted.contains(from) {
                from += 1;
            }
        }
        from
    }
}

impl Lake {
    /// How `ctid` names the rows of the data file `path` (relative to the table's root)
    /// of `schema.table`.
    pub fn tid_file(&self, schema: &str, table: &str, path: &str) -> Result<FileTids, LakeError> {
        self.tids.file(schema, table, path)
    }

    /// Deletes the rows `tids` name from `schema.table`, in one commit (of the running
    /// transaction, if any); returns how many rows were deleted. Tids of rows already
    /// gone, or that no row ever had, delete nothing.
    pub async fn delete_tids(
        &self,
        schema: &str,
        table: &str,
        tids: &[Tid],
    ) -> Result<u64, LakeError> {
        let target = self.existing(schema, table).await?;
        let snapshot = target.snapshot()?;
        if !crate::vectors::as_written(&target)? {
            return Err(LakeError::Unsupported(format!(
                "DELETE or UPDATE by ctid on {schema}.{table}, a partitioned table or one \
                 with renamed columns, is not supported"
            )));
        }
        let views: Vec<LogicalFileView> = snapshot.log_data().iter().collect();
        let index: HashMap<String, usize> = views
            .iter()
            .enumerate()
            .map(|(i, v)| (v.path().to_string(), i))
            .collect();
        // The positions to delete, per file of the snapshot.
        let mut wanted: BTreeMap<usize, RoaringTreemap> = BTreeMap::new();
        {
            let tables = self.tids.tables.lock();
            let Some(files) = tables.get(&(schema.to_string(), table.to_string())) else {
                return Ok(0);
            };
            let live = |p: &str| index.contains_key(p);
            for tid in tids {
                let Some((file, position)) = tid.row() else {
                    continue;
                };
                let Some(path) = files.paths.get(file as usize) else {
                    continue;
                };
                if let Some((path, position)) = files.locate(path.clone(), position, &live) {
                    wanted.entry(index[&path]).or_default().insert(position);
                }
            }
        }
        let root = target.table_url().to_string();
        let mut marked: Vec<(&LogicalFileView, RoaringTreemap)> = Vec::new();
        let mut rows = 0u64;
        for (i, mut positions) in wanted {
            let view = &views[i];
            if let Some(n) = view.num_records() {
                positions.remove_range(n as u64..);
            }
            let old = match view.deletion_vector_descriptor() {
                Some(d) => crate::vectors::read(target.object_store().as_ref(), &root, &d).await?,
                None => RoaringTreemap::new(),
            };
            positions -= &old;
            if positions.is_empty() {
                continue;
            }
            rows += positions.len();
            marked.push((view, positions | old));
        }
        if marked.is_empty() {
            return Ok(0);
        }
        let schema_ref = snapshot.snapshot().arrow_schema();
        let mut actions = Vec::new();
        if crate::vectors::enabled(&target)? {
            actions.extend(crate::vectors::marked_actions(&target, &marked).await?);
        } else {
            // Each file copied on its own, so that its rows keep their order in one new
            // file and later tids can follow them.
            for (view, dropped) in &marked {
                // A target above the file's size: the copy (fewer rows) stays one file.
                let writer = RecordBatchWriter::for_table(&target)?.with_target_file_size(
                    (view.size().max(0) as u64).saturating_mul(2) + (16 << 20),
                );
                let copied = crate::rewrite::without_rows(
                    &target,
                    &schema_ref,
                    &[(*view, dropped.clone())],
                    writer,
                )
                .await?;
                let to = copied.iter().find_map(|a| match a {
                    // Written here: a plain name, nothing to decode.
                    Action::Add(add) => Some(add.path.clone()),
                    _ => None,
                });
                let mut tables = self.tids.tables.lock();
                let files = tables
                    .entry((schema.to_string(), table.to_string()))
                    .or_default();
                if let Some(to) = &to {
                    files
                        .copied_from
                        .insert(to.clone(), view.path().to_string());
                }
                files.moved.insert(
                    view.path().to_string(),
                    Moved {
                        dropped: dropped.clone(),
                        to,
                    },
                );
                actions.extend(copied);
            }
        }
        let operation = DeltaOperation::Delete {
            predicate: Some(format!("ctid IN ({} tids)", tids.len())),
        };
        let committed =
            CommitBuilder::from(crate::txn::commit_properties(CommitProperties::default()))
                .with_actions(actions)
                .build(Some(snapshot), target.log_store(), operation)
                .await?;
        let mut written = DeltaTable::new(target.log_store());
        written.state = Some(committed.snapshot());
        self.remember(schema, table, &written).await;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_round_trip() {
        for (file, position) in [(0, 0), (0, 65_534), (0, 65_535), (3, 1_000_000), (1, 0)] {
            let tid = Tid::of(file, position).unwrap();
            assert_eq!(tid.row(), Some((file, position)), "{tid}");
            assert_eq!(Tid::parse(&tid.to_string()), Some(tid));
        }
        assert_eq!(Tid::of(0, 0).unwrap().to_string(), "(0,1)");
        assert_eq!(Tid::of(1, 0).unwrap().to_string(), "(4096,1)");
        assert_eq!(Tid::of(0, 65_535).unwrap().to_string(), "(1,1)");
        assert_eq!(Tid::of(0, ROWS_PER_BLOCK * BLOCKS_PER_FILE), None);
        assert_eq!(
            Tid::parse(" ( 7 , 3 ) "),
            Some(Tid {
                block: 7,
                offset: 3
            })
        );
        assert_eq!(Tid::parse("(7,70000)"), None);
        assert_eq!(Tid::parse("7,3"), None);
        assert_eq!(
            Tid::parse("'(0,2)'"),
            Some(Tid {
                block: 0,
                offset: 2
            })
        );
        assert_eq!(Tid::parse("(1,2"), None);
        assert_eq!(
            Tid {
                block: 0,
                offset: 0
            }
            .row(),
            None
        );
        assert_eq!(
            Tid {
                block: 1,
                offset: 2
            }
            .to_bytes(),
            [0, 0, 0, 1, 0, 2]
        );
    }

    #[test]
    fn copies_keep_their_rows_tids() {
        let dropped: RoaringTreemap = [1u64, 3].into_iter().collect();
        // Kept: 0, 2, 4, 5, ...
        assert_eq!(
            (0..5).map(|n| nth_kept(&dropped, n)).collect::<Vec<_>>(),
            vec![0, 2, 4, 5, 6]
        );
        let later: RoaringTreemap = [0u64].into_iter().collect();
        let file = FileTids {
            number: 2,
            chain: vec![later, dropped],
        };
        // The copy of the copy holds a's rows 2, 4, 5.
        assert_eq!(file.tid(0), Tid::of(2, 2));
        assert_eq!(file.tid(2), Tid::of(2, 5));
    }

    #[test]
    fn rows_follow_their_file_through_copies() {
        let mut files = Files::default();
        let dropped: RoaringTreemap = [1u64, 3].into_iter().collect();
        files.moved.insert(
            "a".into(),
            Moved {
                dropped,
                to: Some("b".into()),
            },
        );
        let dropped: RoaringTreemap = [0u64].into_iter().collect();
        files.moved.insert(
            "b".into(),
            Moved {
                dropped,
                to: Some("c".into()),
            },
        );
        let live = |p: &str| p == "c";
        // a: rows 0..6; b keeps 0,2,4,5 as 0..4; c keeps b's 1..4 (a's 2,4,5) as 0..3.
        assert_eq!(files.locate("a".into(), 0, &live), None);
        assert_eq!(files.locate("a".into(), 1, &live), None);
        assert_eq!(files.locate("a".into(), 2, &live), Some(("c".into(), 0)));
        assert_eq!(files.locate("a".into(), 5, &live), Some(("c".into(), 2)));
        assert_eq!(files.locate("c".into(), 1, &live), Some(("c".into(), 1)));
        assert_eq!(files.locate("z".into(), 1, &live), None);
    }
}
