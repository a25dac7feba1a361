//! What a disk block takes away, recorded so exactly that comes back: the record
//! ([`Revoked`]) and the statements that take or give it back.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient as PgClient;

use crate::pg::Ident;
use crate::store::tenants::Tenant;

/// One thing taken away from a tenant while it is over its disk quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Revoked {
    /// A relation that belonged to another tenant role passed to the owner role.
    /// `lent_select`: the previous owner was granted SELECT on it meanwhile (ownership
    /// passing takes the owner's own privileges), taken back before it returns.
    Owner {
        oid: u32,
        owner: String,
        #[serde(default)]
        lent_select: bool,
    },
    /// `grantable`: held WITH GRANT OPTION. `grantor`: who granted it, when not the
    /// object's owner at the time (a role re-granting a privilege it held with grant
    /// option); revoking from that role with CASCADE took it too.
    Relation {
        oid: u32,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Column {
        oid: u32,
        column: String,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Schema {
        name: Ident,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grantor: Option<String>,
    },
    Database {
        name: Ident,
        grantee: String,
        privilege: String,
        #[serde(default)]
        grantable: bool,
    },
    /// A membership in the role that holds TEMPORARY on the control database (schema
    /// and shared modes: one role for every tenant, so a block takes the membership).
    Membership { role: String, member: String },
}

/// Privileges that may appear in a record (it is read back from the registry).
const PRIVILEGES: &[&str] = &["INSERT", "UPDATE", "DELETE", "CREATE", "TEMPORARY"];

fn grantee(name: &str) -> String {
    if name == "PUBLIC" {
        "PUBLIC".into()
    } else {
        Ident::new(name.to_string())
            .expect("catalog names are identifiers")
            .to_string()
    }
}

fn privilege(p: &str) -> &str {
    PRIVILEGES
        .iter()
        .find(|x| **x == p)
        .copied()
        .expect("recorded privileges come from the fixed list")
}

pub(super) fn merge(all: &mut Vec<Revoked>, fresh: &[Revoked]) {
    for r in fresh {
        if !all.contains(r) {
            all.push(r.clone());
        }
    }
}

/// Relations by oid: (oid, qualified name, the ALTER keyword for their kind).
async fn relations(
    db: &impl PgClient,
    taken: &[Revoked],
) -> Result<std::collections::HashMap<u32, (String, &'static str)>, tokio_postgres::Error> {
    let oids: Vec<u32> = taken
        .iter()
        .filter_map(|r| match r {
            Revoked::Owner { oid, .. }
            | Revoked::Relation { oid, .. }
            | Revoked::Column { oid, .. } => Some(*oid),
            _ => None,
        })
        .collect();
    if oids.is_empty() {
        return Ok(Default::default());
    }
    let rows = db
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
            &[&oids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name = format!(
                "{}.{}",
                Ident::new(r.get::<_, String>(1)).expect("catalog names are identifiers"),
                Ident::new(r.get::<_, String>(2)).expect("catalog names are identifiers")
            );
            let kind = match r.get::<_, &str>(3) {
                "v" => "VIEW",
                "m" => "MATERIALIZED VIEW",
                "f" => "FOREIGN TABLE",
                _ => "TABLE",
            };
            (r.get::<_, u32>(0), (name, kind))
        })
        .collect())
}

/// Roles of `taken` that still exist (a removed user's grants are not given back).
async fn existing_roles(
    db: &impl PgClient,
    taken: &[Revoked],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<&str> = taken
        .iter()
        .flat_map(|r| match r {
            Revoked::Owner { owner, .. } => vec![owner.as_str()],
            Revoked::Relation {
                grantee, grantor, ..
            }
            | Revoked::Column {
                grantee, grantor, ..
            }
            | Revoked::Schema {
                grantee, grantor, ..
            } => std::iter::once(grantee.as_str())
                .chain(grantor.as_deref())
                .collect(),
            Revoked::Database { grantee, .. } => vec![grantee.as_str()],
            Revoked::Membership { role, member } => vec![role.as_str(), member.as_str()],
        })
        .collect();
    let mut present: Vec<String> = db
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    present.push("PUBLIC".into());
    Ok(present)
}

/// The statements that take (`give == false`) or give back what `taken` lists, in the
/// database the record came from. Objects and roles that are gone are skipped.
///
/// Taking revokes with CASCADE: a privilege a tenant role held WITH GRANT OPTION and
/// passed on goes with what was granted from it (those grants are recorded too).
/// Giving back grants WITH GRANT OPTION where it was held, and a grant that came from
/// another role than the owner is made as that role again (after its grant option is
/// back) when the control role may act as it (a superuser); otherwise as the owner role.
pub(super) async fn privileges_sql(
    db: &impl PgClient,
    t: &Tenant,
    taken: &[Revoked],
    give: bool,
) -> Result<String, tokio_postgres::Error> {
    let rels = relations(db, taken).await?;
    let roles = existing_roles(db, taken).await?;
    let exists = |name: &str| roles.iter().any(|r| r == name);
    let owner = &t.owner_role;
    let superuser = give
        && db
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?
            .get::<_, bool>(0);
    let (verb, prep) = if give {
        ("GRANT", "TO")
    } else {
        ("REVOKE", "FROM")
    };
    // Grants made and taken as a tenant role: (grantor, object, privilege, grantee,
    // grantable, statement); grantor None is the owner role.
    type Item = (Option<String>, String, String, String, bool, String);
    let mut items: Vec<Item> = Vec::new();
    let add = |grantor: &Option<String>, object: String, pr: &str, g: &str, grantable: bool| {
        let option = if give && grantable {
            " WITH GRANT OPTION"
        } else if give {
            ""
        } else {
            " CASCADE"
        };
        let stmt = format!(
            "{verb} {} {object} {prep} {}{option};\n",
            privilege(pr),
            grantee(g)
        );
        let grantor = grantor.clone().filter(|x| give && superuser && exists(x));
        (
            grantor,
            object,
            pr.to_string(),
            g.to_string(),
            grantable,
            stmt,
        )
    };
    let (mut owners, mut other) = (String::new(), String::new());
    for r in taken {
        match r {
            Revoked::Membership { role, member } => {
                if exists(role) && exists(member) {
                    let (role, member) = (grantee(role), grantee(member));
                    other.push_str(&if give {
                        format!("GRANT {role} TO {member};\n")
                    } else {
                        format!("REVOKE {role} FROM {member};\n")
                    });
                }
            }
            Revoked::Owner {
                oid,
                owner: was,
                lent_select,
            } => {
                if let (Some((name, kind)), true) = (rels.get(oid), exists(was)) {
                    let to = if give {
                        grantee(was)
                    } else {
                        owner.to_string()
                    };
                    owners.push_str(&format!("ALTER {kind} {name} OWNER TO {to};\n"));
                    if *lent_select {
                        // Lent while it is not the owner; taken back before it is again.
                        let (verb, prep) = if give {
                            ("REVOKE", "FROM")
                        } else {
                            ("GRANT", "TO")
                        };
                        items.push((
                            None,
                            String::new(),
                            String::new(),
                            String::new(),
                            false,
                            format!("{verb} SELECT ON {name} {prep} {};\n", grantee(was)),
                        ));
                    }
                }
            }
            Revoked::Relation {
                oid,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                if let (Some((name, _)), true) = (rels.get(oid), exists(g)) {
                    items.push(add(grantor, format!("ON {name}"), pr, g, *grantable));
                }
            }
            Revoked::Column {
                oid,
                column,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                let col = Ident::new(column.clone()).expect("catalog names are identifiers");
                if let (Some((name, _)), true) = (rels.get(oid), exists(g)) {
                    items.push(add(
                        grantor,
                        format!("({col}) ON {name}"),
                        pr,
                        g,
                        *grantable,
                    ));
                }
            }
            Revoked::Schema {
                name,
                grantee: g,
                privilege: pr,
                grantable,
                grantor,
            } => {
                let schema = name;
                let present = db
                    .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[name])
                    .await?
                    .is_some();
                if present && exists(g) {
                    items.push(add(
                        grantor,
                        format!("ON SCHEMA {schema}"),
                        pr,
                        g,
                        *grantable,
                    ));
                }
            }
            Revoked::Database {
                name,
                grantee: g,
                privilege: pr,
                grantable,
            } => {
                if exists(g) {
                    let db_name = name;
                    let option = match (give, grantable) {
                        (true, true) => " WITH GRANT OPTION",
                        (true, false) => "",
                        (false, _) => " CASCADE",
                    };
                    other.push_str(&format!(
                        "{verb} {} ON DATABASE {db_name} {prep} {}{option};\n",
                        privilege(pr),
                        grantee(g)
                    ));
                }
            }
        }
    }
    // Grants from another role come after the grant option they depend on is back.
    let mut ordered: Vec<Item> = Vec::new();
    let (mut pending, first): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.0.is_some());
    ordered.extend(first);
    loop {
        let before = pending.len();
        let (ready, rest): (Vec<Item>, Vec<Item>) = pending.into_iter().partition(|i| {
            ordered
                .iter()
                .any(|o| o.1 == i.1 && o.2 == i.2 && o.4 && Some(&o.3) == i.0.as_ref())
        });
        ordered.extend(ready);
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    // What cannot be ordered so is given back as the owner role.
    ordered.extend(pending.into_iter().map(|mut i| {
        i.0 = None;
        i
    }));
    // Grants on the tenant's objects are made and taken as their owner role, so they
    // are recorded as the owner's (as the originals were). Ownership moves to the owner
    // role before its grants are taken, and back after they are given.
    let mut as_owner = String::new();
    let mut current: Option<String> = None;
    for (grantor, .., stmt) in ordered {
        let role = match &grantor {
            Some(g) => grantee(g),
            None => owner.to_string(),
        };
        if current.as_ref() != Some(&role) {
            as_owner.push_str(&format!("SET LOCAL ROLE {role};\n"));
            current = Some(role);
        }
        as_owner.push_str(&stmt);
    }
    if current.is_some() {
        as_owner.push_str("RESET ROLE;\n");
    }
    Ok(if give {
        format!("{other}{as_owner}{owners}")
    } else {
        format!("{owners}{as_owner}{other}")
    })
}
