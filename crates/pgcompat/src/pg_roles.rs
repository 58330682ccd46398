//! `pg_roles` / `pg_user` content: the users of `[[users]]`, readers (`schemas = [...]`)
//! as plain login roles and the others as superusers, or the single `tidepool` superuser
//! a loopback server without users lets in. Passwords never appear (`********`, as in
//! Postgres' `pg_roles`).

use async_trait::async_trait;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

/// The role list datafusion-pg-catalog builds `pg_roles` from.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// (name, superuser) in configuration order.
    pub users: Vec<(String, bool)>,
}

/// The user a server without `[[users]]` reports (any name may log in on loopback).
pub const TRUST_USER: &str = "tidepool";

impl Roles {
    fn list(&self) -> Vec<(String, bool)> {
        if self.users.is_empty() {
            vec![(TRUST_USER.to_string(), true)]
        } else {
            self.users.clone()
        }
    }
}

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.list().into_iter().map(|(n, _)| n).collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        let (name, superuser) = self.list().into_iter().find(|(n, _)| n == name)?;
        Some(Role {
            name,
            is_superuser: superuser,
            can_login: true,
            can_create_db: superuser,
            can_create_role: superuser,
            can_create_user: superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}
