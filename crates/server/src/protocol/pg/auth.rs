//! Postgres startup: trust on loopback without users, SCRAM-SHA-256 with users.
//!
//! Salted passwords come from [`UserDirectory`], computed once at start, so a login costs
//! the server one HMAC round rather than 4096 PBKDF2 iterations.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::protocol::users::UserDirectory;

/// Iterations clients are told to use for SCRAM.
pub const SCRAM_ITERATIONS: usize = crate::protocol::users::SALT_ITERATIONS;

#[async_trait]
impl AuthSource for UserDirectory {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let (salt, salted) = self.salted(login.user().unwrap_or_default());
        Ok(Password::new(Some(salt), salted))
    }
}

/// The parameters reported to clients at startup.
pub fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = crate::engine::server_version();
    p.server_encoding = "UTF8".into();
    p.client_encoding = Some("UTF8".into());
    p.date_style = "ISO, MDY".into();
    p.time_zone = "UTC".into();
    p.integer_datetimes = true;
    p.standard_conforming_strings = true;
    p.search_path = "public".into();
    p.scram_iterations = SCRAM_ITERATIONS;
    p
}

/// Startup without a password, allowed only on loopback without configured users.
pub struct TrustStartup {
    pub params: Arc<DefaultServerParameterProvider>,
    pub pids: Arc<RandomPidSecretKeyGenerator>,
}

#[async_trait]
impl StartupHandler for TrustStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, key) = self.pids.generate(client);
            client.set_pid_and_secret_key(pid, key);
            finish_authentication(client, self.params.as_ref()).await?;
        }
        Ok(())
    }
}

/// With `[tls]`, plaintext startups are refused (28000), unless the peer is on loopback
/// and `plaintext_on_loopback` is set.
#[derive(Debug, Clone, Copy)]
pub struct TlsOnly {
    pub loopback_exempt: bool,
}

/// Checks every startup message before the real handler sees it: TLS when required, and
/// a well-formed SASL initial response (pgwire's decoder panics on a short or lying one,
/// as a cleartext PasswordMessage sent where SCRAM was asked is). Failed logins name the
/// user of the startup packet and are logged once, without the password.
pub struct StartupGate<S> {
    inner: S,
    tls_only: Option<TlsOnly>,
    sasl_started: AtomicBool,
}

impl<S> StartupGate<S> {
    pub fn new(inner: S, tls_only: Option<TlsOnly>) -> Self {
        StartupGate {
            inner,
            tls_only,
            sasl_started: AtomicBool::new(false),
        }
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// Whether `body` is a SASLInitialResponse: mechanism, NUL, int32 length (-1 or at most
/// what follows), then that many bytes.
pub fn valid_sasl_initial(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    let Some(len) = rest.get(..4) else {
        return false;
    };
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    len == -1 || (len >= 0 && len as usize == rest.len() - 4)
}

#[async_trait]
impl<S: StartupHandler> StartupHandler for StartupGate<S> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &message {
            PgWireFrontendMessage::Startup(_) => {
                if let Some(t) = self.tls_only
                    && !client.is_secure()
                    && !(t.loopback_exempt && client.socket_addr().ip().is_loopback())
                {
                    tracing::info!(peer = %client.socket_addr(), "plaintext login refused: TLS is required");
                    return Err(fatal(
                        "28000",
                        "this server requires TLS: connect with sslmode=require (or verify-full)",
                    ));
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body))
                if !self.sasl_started.swap(true, Ordering::SeqCst) && !valid_sasl_initial(body) =>
            {
                tracing::info!(peer = %client.socket_addr(), "login refused: malformed SASL initial response");
                return Err(fatal(
                    "08P01",
                    "expected a SASL initial response: this server authenticates with SCRAM-SHA-256",
                ));
            }
            _ => {}
        }
        let user = client.metadata().get(pgwire::api::METADATA_USER).cloned();
        match self.inner.on_startup(client, message).await {
            Err(PgWireError::InvalidPassword(_)) => {
                let user = user.unwrap_or_default();
                tracing::info!(%user, peer = %client.socket_addr(), "password authentication failed");
                Err(PgWireError::InvalidPassword(user))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_sasl_initial;

    #[test]
    fn sasl_initial_responses_are_checked_before_decoding() {
        let mut ok = b"SCRAM-SHA-256\0".to_vec();
        ok.extend_from_slice(&3i32.to_be_bytes());
        ok.extend_from_slice(b"abc");
        assert!(valid_sasl_initial(&ok));
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(valid_sasl_initial(&none));
        assert!(!valid_sasl_initial(b"secret-password\0"));
        assert!(!valid_sasl_initial(b"no nul at all"));
        let mut lying = b"SCRAM-SHA-256\0".to_vec();
        lying.extend_from_slice(&1000i32.to_be_bytes());
        assert!(!valid_sasl_initial(&lying));
        let mut negative = b"SCRAM-SHA-256\0".to_vec();
        negative.extend_from_slice(&(-7i32).to_be_bytes());
        assert!(!valid_sasl_initial(&negative));
    }
}
