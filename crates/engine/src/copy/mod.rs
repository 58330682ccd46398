//! `COPY ... TO STDOUT` and `COPY ... FROM STDIN`, the protocol-independent part.
//!
//! COPY TO runs its query as any SELECT (same planning, same authorization) and hands the
//! rows with their [`CopyOptions`] to the wire protocol, which encodes them. COPY FROM
//! becomes `INSERT INTO t (cols) SELECT * FROM tidepool_copy_stdin()`: the session's
//! table function of that name reads the rows the client sends, so the write is an
//! INSERT in every respect (privileges, defaults of the columns not listed, NOT NULL and
//! CHECK, one commit, or part of the open transaction). The protocol passes the client's
//! data chunks to a [`CopyInData`]; a task splits them into rows and typed batches
//! ([`rows_in`], [`batch_in`]; binary data straight into batches, [`binary_in`]) one
//! batch ahead of the write. A malformed row or a
//! CopyFail fails the stream, so the INSERT fails and writes nothing.

mod batch_in;
mod binary_in;
pub mod options;
mod rows_in;
mod source;

pub use batch_in::sql_name;
pub use options::{CopyFormat, CopyOptions, ForceQuote};
pub use source::{COPY_FUNCTION, CopyInData, CopySlot, start};

use datafusion::sql::parser::Statement as DFStatement;

/// A `COPY ... FROM STDIN` waiting for its data: the protocol sends the client a
/// CopyInResponse for `columns` columns in `options.format`, passes the data to `data`
/// and runs [`crate::Session::finish_copy_in`] with `insert` while it does.
pub struct CopyIn {
    pub options: CopyOptions,
    pub columns: usize,
    pub data: CopyInData,
    pub insert: CopyInsert,
}

/// The INSERT a COPY FROM runs (opaque to the protocol).
pub struct CopyInsert(pub(crate) DFStatement);
