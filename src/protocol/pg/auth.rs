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
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

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
