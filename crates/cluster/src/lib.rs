//! Queries past one machine, on Apache DataFusion Ballista.
//!
//! A server with `[cluster] scheduler` plans each query itself, as always (names,
//! authorization, row policies, tidepool's rewrites, lake snapshots turned into Parquet
//! scans by [`tidepool_engine`]); when the plan may leave the node
//! ([`tidepool_engine::distributed`]), [`remote::Remote`] ships the *physical* plan to
//! the scheduler, which cuts it into stages at its exchanges and hands the tasks to
//! executors; the rows come back over Arrow Flight. Shipping the physical plan, not the
//! logical one, keeps the scheduler free of the lake: it needs no Delta log and no
//! credentials, only tidepool's functions to decode expressions. The executors read the
//! table files from the lake's object store, so they are started with the lake's
//! configuration. [`scheduler::run`] and [`executor::run`] are `tidepool scheduler` and
//! `tidepool executor`.

pub mod executor;
mod job;
pub mod remote;
pub mod scheduler;
mod task_stop;

/// Why a cluster process could not start or a query could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid scheduler address {0:?}: expected df://host:port")]
    Address(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ballista(#[from] ballista_core::error::BallistaError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// `df://host:port` (or `http://host:port`, or `host:port`) as `(host, port)`.
pub fn parse_scheduler(address: &str) -> Result<(String, u16), ClusterError> {
    let bad = || ClusterError::Address(address.to_string());
    let text = if address.contains("://") {
        address.to_string()
    } else {
        format!("df://{address}")
    };
    let url = url::Url::parse(&text).map_err(|_| bad())?;
    if !matches!(url.scheme(), "df" | "http" | "grpc") {
        return Err(bad());
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, url.port().unwrap_or(50050)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses() {
        assert_eq!(
            parse_scheduler("df://127.0.0.1:50050").ok(),
            Some(("127.0.0.1".to_string(), 50050))
        );
        assert_eq!(
            parse_scheduler("sched:7000").ok(),
            Some(("sched".to_string(), 7000))
        );
        assert_eq!(
            parse_scheduler("df://sched").ok(),
            Some(("sched".to_string(), 50050))
        );
        assert!(parse_scheduler("s3://bucket").is_err());
        assert!(parse_scheduler("df://:1").is_err());
    }
}
