//! The users every listener authenticates against, with salted passwords only.
//!
//! Salted passwords (SCRAM-SHA-256's PBKDF2 form) are computed once at start: the Postgres
//! side uses them for SCRAM, the Flight side checks a Basic password by salting it the same
//! way and comparing in constant time. An unknown user gets a random password, so the
//! failure looks the same as a wrong password and user names cannot be probed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use pgwire::api::auth::sasl::scram::gen_salted_password;

use crate::config::User;

/// Iterations of the password salting (and what SCRAM clients are told to use).
pub const SALT_ITERATIONS: usize = 4096;

/// A user's salt and salted password.
pub(crate) type Salted = (Vec<u8>, Vec<u8>);

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
                let salted = gen_salted_password(u.password.expose(), &salt, SALT_ITERATIONS);
                (u.name.clone(), (salt.to_vec(), salted))
            })
            .collect();
        UserDirectory {
            users: Arc::new(users),
            decoy_salt: rand::random::<[u8; 16]>().to_vec(),
        }
    }

    /// True when no users are configured (trust on loopback).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The salt and salted password of `user`; a random one for unknown users.
    pub(crate) fn salted(&self, user: &str) -> Salted {
        match self.users.get(user) {
            Some(s) => s.clone(),
            None => {
                tracing::info!(user, "login attempt for unknown user");
                let random: [u8; 32] = rand::random();
                (self.decoy_salt.clone(), random.to_vec())
            }
        }
    }

    /// Checks a clear-text password (Flight's Basic authentication). Costs one salting
    /// (about 2 ms), the same for unknown users.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (salt, salted) = self.salted(user);
        let given = gen_salted_password(password, &salt, SALT_ITERATIONS);
        given.len() == salted.len()
            && given
                .iter()
                .zip(&salted)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Decodes the base64 of a `Basic` authorization header, padded or not (Go's ADBC Flight
/// SQL driver leaves the padding off).
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = LENIENT.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn verifies_passwords() {
        let dir = UserDirectory::new(&[User {
            name: "ana".into(),
            password: Secret::new("s3cret"),
            schemas: None,
            files: Vec::new(),
        }]);
        assert!(dir.verify("ana", "s3cret"));
        assert!(!dir.verify("ana", "s3cre"));
        assert!(!dir.verify("bob", "s3cret"));
    }

    #[test]
    fn basic_credentials_with_or_without_padding() {
        let want = Some(("globex".to_string(), "globex pw".to_string()));
        assert_eq!(decode_basic("Z2xvYmV4Omdsb2JleCBwdw=="), want);
        assert_eq!(decode_basic("Z2xvYmV4Omdsb2JleCBwdw"), want);
        assert_eq!(decode_basic("!!!"), None);
    }
}
