//! Postgres startup: trust on loopback without users, SCRAM-SHA-256 with users.
//!
//! Salted passwords are computed once at start, so a login costs the server one HMAC
//! round rather than 4096 PBKDF2 iterations. An unknown user gets a random password, so
//! the failure looks the same as a wrong password and user names cannot be probed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::config::User;

/// Iterations clients are told to use for SCRAM.
pub const SCRAM_ITERATIONS: usize = 4096;

/// A user's salt and salted password.
type Salted = (Vec<u8>, Vec<u8>);

/// Users and their salted passwords.
#[derive(Clone)]
pub struct UserDirectory {
    users: Arc<HashMap<String, Salted>>,
    decoy_salt: Vec<u8>,
}

impl Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDirectory")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl UserDirectory {
    pub fn new(users: &[User]) -> Self {
        let users = users
            .iter()
            .map(|u| {
                let salt: [u8; 16] = rand::random();
                let salted = gen_salted_password(u.password.expose(), &salt, SCRAM_ITERATIONS);
                (u.name.clone(), (salt.to_vec(), salted))
            })
            .collect();
        UserDirectory {
            users: Arc::new(users),
            decoy_salt: rand::random::<[u8; 16]>().to_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[async_trait]
impl AuthSource for UserDirectory {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.users.get(user) {
            Some((salt, salted)) => Ok(Password::new(Some(salt.clone()), salted.clone())),
            None => {
                tracing::info!(user, "login attempt for unknown user");
                let random: [u8; 32] = rand::random();
                Ok(Password::new(
                    Some(self.decoy_salt.clone()),
                    random.to_vec(),
                ))
            }
        }
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
