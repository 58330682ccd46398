//! Flight authentication: Basic credentials in a Handshake buy a bearer token; later
//! calls carry `authorization: Bearer <token>`.
//!
//! A token names its user and keeps that client's engine session (so `SET` holds across
//! calls, as on a Postgres connection). Tokens expire after `flight.token_ttl_secs`;
//! expired ones are swept at each handshake. Without configured users (loopback only)
//! calls need no token and run as `tidepool`, or as the user named in a handshake.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::engine::{Engine, Session};
use crate::protocol::users::UserDirectory;

/// An engine session shared by the calls of one token.
pub type SharedSession = Arc<tokio::sync::Mutex<Session>>;

/// Who is calling.
#[derive(Clone)]
pub struct Caller {
    pub user: String,
    /// The token's session; calls without a token get a fresh session each.
    pub session: Option<SharedSession>,
}

impl Caller {
    /// The session to run a call in.
    pub fn session(&self, engine: &Arc<Engine>) -> SharedSession {
        match &self.session {
            Some(s) => s.clone(),
            None => Arc::new(tokio::sync::Mutex::new(engine.session(&self.user))),
        }
    }
}

struct TokenEntry {
    user: String,
    expires: Instant,
    session: SharedSession,
}

/// Users, and the tokens handed out to them.
pub struct Authenticator {
    users: UserDirectory,
    ttl: Duration,
    tokens: parking_lot::Mutex<HashMap<String, TokenEntry>>,
}

/// The user to run as when no users are configured and nobody is named.
const TRUST_USER: &str = "tidepool";

fn unauthenticated(message: &str) -> Status {
    Status::unauthenticated(message.to_string())
}

impl Authenticator {
    pub fn new(users: UserDirectory, ttl: Duration) -> Self {
        Authenticator {
            users,
            ttl,
            tokens: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// True when calls must authenticate.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a handshake's Basic credentials and issues a token for them.
    pub fn handshake(&self, md: &MetadataMap, engine: &Arc<Engine>) -> Result<String, Status> {
        let user = match basic(md)? {
            Some((user, password)) => {
                if self.required() && !self.users.verify(&user, &password) {
                    tracing::info!(user, "flight: authentication failed");
                    return Err(unauthenticated("password authentication failed"));
                }
                user
            }
            None if self.required() => {
                return Err(unauthenticated(
                    "authentication required: send Basic credentials in the handshake",
                ));
            }
            None => TRUST_USER.to_string(),
        };
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            TokenEntry {
                session: Arc::new(tokio::sync::Mutex::new(engine.session(&user))),
                user,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// Who makes a call: the bearer token's user, Basic credentials, or (without users)
    /// the trusted default.
    pub fn caller(&self, md: &MetadataMap) -> Result<Caller, Status> {
        if let Some(token) = bearer(md)? {
            let tokens = self.tokens.lock();
            return match tokens.get(token) {
                Some(t) if t.expires > Instant::now() => Ok(Caller {
                    user: t.user.clone(),
                    session: Some(t.session.clone()),
                }),
                Some(_) => Err(unauthenticated("token expired; handshake again")),
                None => Err(unauthenticated("invalid token; handshake again")),
            };
        }
        if let Some((user, password)) = basic(md)? {
            if self.required() && !self.users.verify(&user, &password) {
                return Err(unauthenticated("password authentication failed"));
            }
            return Ok(Caller {
                user,
                session: None,
            });
        }
        if self.required() {
            return Err(unauthenticated(
                "authentication required: handshake with Basic credentials, then send the bearer token",
            ));
        }
        Ok(Caller {
            user: TRUST_USER.to_string(),
            session: None,
        })
    }
}

fn authorization(md: &MetadataMap) -> Result<Option<&str>, Status> {
    match md.get("authorization") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| unauthenticated("the authorization header is not text")),
    }
}

fn bearer(md: &MetadataMap) -> Result<Option<&str>, Status> {
    Ok(authorization(md)?.and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    }))
}

fn basic(md: &MetadataMap) -> Result<Option<(String, String)>, Status> {
    let Some(encoded) = authorization(md)?.and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
            .map(str::trim)
    }) else {
        return Ok(None);
    };
    let bad = || unauthenticated("malformed Basic credentials");
    crate::protocol::users::decode_basic(encoded)
        .map(Some)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn md(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn parses_basic_and_bearer() {
        let m = md(&format!("Basic {}", STANDARD.encode("ana:pa:ss")));
        assert_eq!(
            basic(&m).unwrap(),
            Some(("ana".to_string(), "pa:ss".to_string()))
        );
        assert_eq!(bearer(&m).unwrap(), None);
        assert_eq!(bearer(&md("Bearer abc")).unwrap(), Some("abc"));
        assert!(basic(&md("Basic !!!")).is_err());
    }
}
