//! One Postgres connection: TLS negotiation (pgwire's), then every byte the client sends
//! passes a [`FrameGuard`] before pgwire's decoder sees it, then the message loop.
//!
//! pgwire 0.41's decoders trust declared lengths: a message declaring fewer than 4 bytes
//! (`full_len - 4` underflows) or a SASL response shorter than it claims panics the
//! connection task. The guard reads the message framing as the bytes stream in and ends
//! the connection with 08P01 at the first impossible length, so no such message reaches
//! the decoder. The loop is pgwire's `process_socket` with our startup deadline.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::admission::{Admission, LoggingIn};

/// Largest message a client may declare (pgwire refuses more than 1 GiB as well).
const MAX_MESSAGE: i64 = 1 << 30;
/// Startup-phase request codes that keep the stream untagged (SSL, GSS, cancel).
const UNTAGGED_CODES: [i32; 3] = [80877103, 80877104, 80877102];

/// Where the framing scan stands.
#[derive(Debug)]
struct Framing {
    /// Messages carry a type byte (after the startup packet).
    tagged: bool,
    /// The client has logged in; before that only password messages and Terminate may
    /// come (as in Postgres), so no other decoder runs for a client that is not logged in.
    logged_in: Arc<AtomicBool>,
    header: Vec<u8>,
    /// Body bytes of the current message still to come.
    remaining: i64,
    /// First body bytes of an untagged packet (its request code), being collected.
    code: Option<Vec<u8>>,
}

impl Framing {
    fn new() -> Self {
        Framing {
            tagged: false,
            logged_in: Arc::new(AtomicBool::new(false)),
            header: Vec::with_capacity(5),
            remaining: 0,
            code: None,
        }
    }

    /// Scans `bytes`; an error names the first impossible length.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if let Some(code) = &mut self.code {
                let take = (4 - code.len()).min(bytes.len());
                code.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                self.remaining -= take as i64;
                if code.len() == 4 {
                    let c = i32::from_be_bytes([code[0], code[1], code[2], code[3]]);
                    // TLS was negotiated (or declined) before this stream began.
                    if c == UNTAGGED_CODES[0] || c == UNTAGGED_CODES[1] {
                        return Err("a second SSL or GSS encryption request".to_string());
                    }
                    self.tagged = !UNTAGGED_CODES.contains(&c);
                    self.code = None;
                }
                continue;
            }
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(bytes.len());
                bytes = &bytes[take..];
                self.remaining -= take as i64;
                continue;
            }
            let want = if self.tagged { 5 } else { 4 };
            let take = (want - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < want {
                continue;
            }
            if self.tagged
                && !matches!(self.header[0], b'p' | b'X')
                && !self.logged_in.load(Ordering::Acquire)
            {
                return Err(format!(
                    "unexpected message type '{}' before authentication completed",
                    self.header[0].escape_ascii()
                ));
            }
            let l = &self.header[want - 4..];
            let len = i64::from(i32::from_be_bytes([l[0], l[1], l[2], l[3]]));
            let min = if self.tagged { 4 } else { 8 };
            if !(min..=MAX_MESSAGE).contains(&len) {
                return Err(format!("invalid message length {len}"));
            }
            self.header.clear();
            self.remaining = len - 4;
            if !self.tagged {
                self.code = Some(Vec::with_capacity(4));
            }
        }
        Ok(())
    }
}

/// The client's byte stream, refused at the first impossible message length.
pub struct FrameGuard<T> {
    inner: T,
    framing: Framing,
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                match this.framing.scan(fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => {
                        // Nothing of the bad message reaches the decoder.
                        buf.set_filled(before);
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                    }
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn protocol_violation(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        "08P01".to_string(),
        message,
    )))
}

/// Serves one connection until the client leaves. A client that has not logged in within
/// `startup_timeout`, or that a newer connection pushed out of the login budget, is
/// dropped; its startup message takes a session slot of `admission` or is answered with
/// 53300.
pub async fn serve<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    startup_timeout: Duration,
    admission: Arc<Admission>,
    login: LoggingIn,
) -> io::Result<()> {
    let mut login = Some(login);
    let evicted = login
        .as_ref()
        .map(|l| l.evicted.clone())
        .unwrap_or_default();
    let watch = super::client_gone::Watch::new(&tcp);
    let deadline = tokio::time::sleep(startup_timeout);
    tokio::pin!(deadline);
    let negotiated = tokio::select! {
        _ = &mut deadline => return Ok(()),
        _ = evicted.cancelled() => return Ok(()),
        s = negotiate_tls(tcp, tls) => s?,
    };
    let mut slot = None;
    let Some(socket) = negotiated else {
        return Ok(());
    };
    let old = socket.into_parts();
    let mut framing = Framing::new();
    let logged_in = framing.logged_in.clone();
    let bad_start = framing.scan(&old.read_buf).err();
    let mut parts = FramedParts::new(
        FrameGuard {
            inner: old.io,
            framing,
        },
        old.codec,
    );
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);
    if let Some(e) = bad_start {
        return process_error(&mut socket, protocol_violation(e), false).await;
    }

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        if !logging_in {
            logged_in.store(true, Ordering::Release);
            drop(login.take());
        }
        let next = if logging_in {
            tokio::select! {
                _ = &mut deadline => None,
                _ = evicted.cancelled() => None,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(PgWireError::IoError(e))) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = process_error(&mut socket, protocol_violation(e.to_string()), false).await;
                let _ = socket.close().await;
                return Ok(());
            }
            _ => break,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        if matches!(message, PgWireFrontendMessage::Startup(_)) && slot.is_none() {
            slot = admission.slot();
            if slot.is_none() {
                tracing::warn!("connection refused: too many connections");
                let e = PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_string(),
                    "53300".to_string(),
                    "sorry, too many clients already".to_string(),
                )));
                let _ = process_error(&mut socket, e, false).await;
                let _ = socket.close().await;
                return Ok(());
            }
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        );
        // A client that went away mid-statement takes its statement with it.
        let processed = tokio::select! {
            r = processed => r,
            _ = watch.gone() => {
                tracing::debug!("client disconnected during a statement; dropping it");
                return Ok(());
            }
        };
        if let Err(mut e) = processed {
            use pgwire::api::ErrorHandler;
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_query).await?;
        }
    }
    let _ = SinkExt::<PgWireBackendMessage>::close(&mut socket).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Framing;

    impl Framing {
        fn clone_state(&self) -> Framing {
            Framing {
                tagged: self.tagged,
                logged_in: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
                    self.logged_in.load(std::sync::atomic::Ordering::Acquire),
                )),
                header: self.header.clone(),
                remaining: self.remaining,
                code: self.code.clone(),
            }
        }
    }

    fn startup() -> Vec<u8> {
        let mut body = 196608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0a\0\0");
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn lengths_are_checked_across_reads() {
        let mut f = Framing::new();
        let s = startup();
        // Split anywhere: the scan carries its state.
        f.scan(&s[..3]).unwrap();
        f.scan(&s[3..]).unwrap();
        let mut q = vec![b'Q'];
        q.extend_from_slice(&9i32.to_be_bytes());
        q.extend_from_slice(b"SELECT");
        assert!(f.clone_state().scan(&q).is_err(), "no query before login");
        f.logged_in
            .store(true, std::sync::atomic::Ordering::Release);
        f.scan(&q[..2]).unwrap();
        f.scan(&q[2..]).unwrap();
        let mut bad = vec![b'p'];
        bad.extend_from_slice(&3i32.to_be_bytes());
        assert!(f.scan(&bad).is_err());
    }

    #[test]
    fn startup_lengths_and_ssl_requests() {
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&80877103i32.to_be_bytes());
        let mut f = Framing::new();
        assert!(
            f.scan(&ssl).is_err(),
            "TLS was negotiated before: a second request"
        );
        let mut f = Framing::new();
        f.scan(&startup()).unwrap();
        assert!(f.tagged);
        for declared in [0i32, 4, -1] {
            let mut f = Framing::new();
            assert!(f.scan(&declared.to_be_bytes()).is_err(), "{declared}");
        }
        let mut f = Framing::new();
        let mut huge = vec![b'Q'];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        f.tagged = true;
        assert!(f.scan(&huge).is_err());
    }
}
