//! `GRANT`, `REVOKE`, `CREATE POLICY`, `DROP POLICY` and `ALTER TABLE ... ENABLE | DISABLE
//! ROW LEVEL SECURITY`, as Postgres has them, kept in the lake's security document. Only
//! full users change them (a reader gets 42501).

use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CreatePolicyCommand, GrantObjects, Grantee, GranteeName, ObjectName,
    Owner, Privileges, Statement,
};

use super::Session;
use super::output::{CommandTag, Output};
use crate::EngineError;
use crate::authz::Touch;
use crate::authz::security::{Grant, PRIVILEGES, Policy};
use crate::names::reference;

fn schema_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())
        .unwrap_or_default()
}

fn privileges(p: &Privileges) -> Result<Vec<String>, EngineError> {
    match p {
        Privileges::All { .. } => Ok(PRIVILEGES.iter().map(|s| s.to_string()).collect()),
        Privileges::Actions(actions) => actions
            .iter()
            .map(|a| {
                let word = a
                    .to_string()
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if PRIVILEGES.contains(&word.as_str()) {
                    Ok(word)
                } else {
                    Err(EngineError::NotSupported(format!(
                        "privilege {a} (tidepool grants SELECT, INSERT, UPDATE, DELETE, TRUNCATE and ALL)"
                    )))
                }
            })
            .collect(),
    }
}

impl Session {
    fn users(&self, grantees: &[Grantee]) -> Result<Vec<String>, EngineError> {
        grantees
            .iter()
            .map(|g| {
                let name = match &g.name {
                    Some(GranteeName::ObjectName(n)) => n.to_string().trim_matches('"').to_string(),
                    _ => return Err(EngineError::NotSupported(format!("grantee {g}"))),
                };
                if self.engine.options().access.users.contains_key(&name) {
                    Ok(name)
                } else {
                    Err(EngineError::UndefinedObject(format!(
                        "role \"{name}\" does not exist (users are [[users]] entries of tidepool.toml)"
                    )))
                }
            })
            .collect()
    }

    /// Objects of a GRANT or REVOKE as (schema, table); `None` table: the whole schema.
    fn objects(
        &self,
        objects: &Option<GrantObjects>,
    ) -> Result<Vec<(String, Option<String>)>, EngineError> {
        match objects {
            Some(GrantObjects::Schemas(s))
            | Some(GrantObjects::AllTablesInSchema { schemas: s }) => {
                Ok(s.iter().map(|n| (schema_name(n), None)).collect())
            }
            Some(GrantObjects::Tables(t)) => t
                .iter()
                .map(|n| {
                    let (s, t) = self.resolve(&reference(n))?;
                    Ok((s, Some(t)))
                })
                .collect(),
            other => Err(EngineError::NotSupported(format!(
                "GRANT on {}: grant ON TABLE s.t, ON SCHEMA s or ON ALL TABLES IN SCHEMA s",
                other.as_ref().map(|o| o.to_string()).unwrap_or_default()
            ))),
        }
    }

    /// Runs a security statement ([`Kind::Security`](super::kind::Kind::Security)).
    pub(super) async fn run_security(&mut self, stmt: &Statement) -> Result<Output, EngineError> {
        let store = self.engine.options().access.security.clone();
        let tag = match stmt {
            Statement::Grant(g) => {
                self.principal().check(&Touch::Database {
                    what: "GRANT".into(),
                })?;
                let privileges = privileges(&g.privileges)?;
                let objects = self.objects(&g.objects)?;
                let users = self.users(&g.grantees)?;
                store
                    .update(|doc| {
                        for user in &users {
                            for (schema, table) in &objects {
                                for p in &privileges {
                                    let grant = Grant {
                                        user: user.clone(),
                                        privilege: p.clone(),
                                        schema: schema.clone(),
                                        table: table.clone(),
                                    };
                                    if !doc.grants.contains(&grant) {
                                        doc.grants.push(grant);
                                    }
                                }
                            }
                        }
                        Ok(())
                    })
                    .await?;
                "GRANT"
            }
            Statement::Revoke(r) => {
                self.principal().check(&Touch::Database {
                    what: "REVOKE".into(),
                })?;
                let privileges = privileges(&r.privileges)?;
                let objects = self.objects(&r.objects)?;
                let users = self.users(&r.grantees)?;
                store
                    .update(|doc| {
                        doc.grants.retain(|g| {
                            !(users.contains(&g.user)
                                && privileges.contains(&g.privilege)
                                && objects
                                    .iter()
                                    .any(|(s, t)| *s == g.schema && (t.is_none() || *t == g.table)))
                        });
                        Ok(())
                    })
                    .await?;
                "REVOKE"
            }
            Statement::CreatePolicy(p) => {
                let (schema, table) = self.resolve(&reference(&p.table_name))?;
                self.principal().check(&Touch::Define {
                    schema: schema.clone(),
                    what: "CREATE POLICY".into(),
                })?;
                let command = match &p.command {
                    None | Some(CreatePolicyCommand::All) => "ALL",
                    Some(CreatePolicyCommand::Select) => "SELECT",
                    Some(other) => {
                        return Err(EngineError::NotSupported(format!(
                            "policies FOR {other:?}: policies filter reads (FOR SELECT or FOR ALL); only owners write tables with row-level security"
                        )));
                    }
                };
                let Some(using) = &p.using else {
                    return Err(EngineError::NotSupported(
                        "a policy without USING (WITH CHECK alone)".into(),
                    ));
                };
                let roles = match &p.to {
                    None => vec!["public".to_string()],
                    Some(owners) => owners
                        .iter()
                        .map(|o| match o {
                            Owner::Ident(i) => Ok(i.value.clone()),
                            other => Err(EngineError::NotSupported(format!("policy role {other}"))),
                        })
                        .collect::<Result<_, _>>()?,
                };
                // The predicate must plan against the table now, not at the first read.
                let check = format!("SELECT 1 FROM {schema}.{table} WHERE {using} LIMIT 0");
                let probe = self.parse(&check)?;
                for st in probe {
                    self.plan(st).await?;
                }
                let name = p.name.value.clone();
                let policy = Policy {
                    name: name.clone(),
                    schema: schema.clone(),
                    table: table.clone(),
                    command: command.to_string(),
                    roles,
                    using: using.to_string(),
                };
                store
                    .update(|doc| {
                        if doc
                            .policies
                            .iter()
                            .any(|q| q.name == name && q.schema == schema && q.table == table)
                        {
                            return Err(EngineError::DuplicateObject(format!(
                                "policy \"{name}\" for table \"{schema}.{table}\" already exists"
                            )));
                        }
                        doc.policies.push(policy.clone());
                        Ok(())
                    })
                    .await?;
                "CREATE POLICY"
            }
            Statement::DropPolicy(p) => {
                let (schema, table) = self.resolve(&reference(&p.table_name))?;
                self.principal().check(&Touch::Define {
                    schema: schema.clone(),
                    what: "DROP POLICY".into(),
                })?;
                let name = p.name.value.clone();
                let if_exists = p.if_exists;
                store
                    .update(|doc| {
                        let before = doc.policies.len();
                        doc.policies.retain(|q| {
                            !(q.name == name && q.schema == schema && q.table == table)
                        });
                        if doc.policies.len() == before && !if_exists {
                            return Err(EngineError::UndefinedObject(format!(
                                "policy \"{name}\" for table \"{schema}.{table}\" does not exist"
                            )));
                        }
                        Ok(())
                    })
                    .await?;
                "DROP POLICY"
            }
            // Only ALTER TABLE ... [NO FORCE | ENABLE | DISABLE] ROW LEVEL SECURITY is
            // classified here (Kind::of).
            Statement::AlterTable(a) => {
                let (schema, table) = self.resolve(&reference(&a.name))?;
                self.principal().check(&Touch::Define {
                    schema: schema.clone(),
                    what: "ALTER TABLE".into(),
                })?;
                if !self
                    .engine
                    .lake()
                    .cached_listing()
                    .contains(&schema, &table)
                {
                    self.engine.lake().refresh().await?;
                    if !self
                        .engine
                        .lake()
                        .cached_listing()
                        .contains(&schema, &table)
                    {
                        return Err(EngineError::UndefinedTable(format!("{schema}.{table}")));
                    }
                }
                let key = format!("{schema}.{table}");
                let ops = a.operations.clone();
                store
                    .update(|doc| {
                        for o in &ops {
                            match o {
                                AlterTableOperation::EnableRowLevelSecurity
                                    if !doc.rls.contains(&key) =>
                                {
                                    doc.rls.push(key.clone());
                                }
                                AlterTableOperation::DisableRowLevelSecurity => {
                                    doc.rls.retain(|t| *t != key)
                                }
                                // Owners (full users) are never filtered: FORCE has no
                                // one left to apply to.
                                _ => {}
                            }
                        }
                        Ok(())
                    })
                    .await?;
                "ALTER TABLE"
            }
            other => return Err(EngineError::NotSupported(other.to_string())),
        };
        Ok(Output::Command(CommandTag::new(tag)))
    }
}
