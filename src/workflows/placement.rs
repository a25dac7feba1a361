//! Which server a create puts the tenant on (docs/servers.md#placement): the one it
//! names (`server`), or the one its `placement` policy picks among the servers that
//! take new tenants (not draining, not down). With only `default` registered and no
//! `server` or `placement` given, nothing is read: the create goes on as before.

use crate::fleet::placement;
use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::servers::DEFAULT;

use super::servers::{self, mark_down, opened};
use super::Error;

impl From<servers::Error> for Error {
    fn from(e: servers::Error) -> Self {
        use crate::tenant::service::Error as T;
        match e {
            servers::Error::Rejected(p) => Error::Rejected(p),
            servers::Error::Store(e) => Error::Tenant(T::from(e)),
            servers::Error::Pool(e) => Error::Tenant(T::Pool(e)),
            servers::Error::Db(e) => Error::Tenant(T::Db(e)),
            servers::Error::Tenant(e) => e.into(),
        }
    }
}

fn refused(field: &str, code: &str, message: String) -> Error {
    let mut p = Problem::new(Kind::Conflict, code, message);
    p.field = Some(field.into());
    Error::Rejected(p)
}

/// The server a new tenant goes to. `Err(Rejected)`: a bad `server` or `placement`
/// (400/422 naming the field), or none can take it (409 saying why).
pub async fn place(
    p: &Platform,
    server: Option<&str>,
    policy: Option<&serde_json::Value>,
) -> Result<String, Error> {
    let parsed = placement::parse(policy)
        .map_err(|m| Error::Rejected(Problem::bad_field("placement", m)))?;
    if let Some(name) = server {
        if policy.is_some() {
            return Err(Error::Rejected(Problem::bad_field(
                "placement",
                "give either server or placement, not both",
            )));
        }
        return explicit(p, name).await;
    }
    if policy.is_none() {
        let c = p.pool.get().await?;
        let others = crate::store::servers::others_exist(&c)
            .await
            .map_err(crate::tenant::service::Error::from)?;
        if !others {
            return Ok(DEFAULT.to_string());
        }
    }
    let mut candidates = servers::candidates(p, &parsed).await?;
    loop {
        let name = placement::choose(&parsed, &candidates)
            .map_err(|m| refused("placement", "no_server_matches", m))?;
        match reachable(p, &name).await {
            Ok(()) => return Ok(name),
            Err(reason) => {
                mark_down(p, &name, &reason).await;
                if let Some(c) = candidates.iter_mut().find(|c| c.name == name) {
                    c.down_reason = Some(reason);
                }
            }
        }
    }
}

/// `server` named: it must exist and take new tenants.
async fn explicit(p: &Platform, name: &str) -> Result<String, Error> {
    let row = crate::store::servers::find(&p.pool.get().await?, name)
        .await
        .map_err(crate::tenant::service::Error::from)?;
    let Some(row) = row else {
        let mut prob = Problem::new(
            Kind::Unprocessable,
            "server_not_found",
            format!("server: no server named {name:?}; see GET /api/v1/servers"),
        );
        prob.field = Some("server".into());
        return Err(Error::Rejected(prob));
    };
    if row.draining {
        return Err(refused(
            "server",
            "server_draining",
            format!("server: {name:?} is draining and takes no new tenants"),
        ));
    }
    if let Err(reason) = reachable(p, name).await {
        mark_down(p, name, &reason).await;
        return Err(refused(
            "server",
            "server_down",
            format!("server: {name:?} is down ({reason})"),
        ));
    }
    if row.down_reason.is_some() {
        // It came back.
        let c = p.pool.get().await?;
        crate::store::servers::set_health(&c, name, None, None)
            .await
            .map_err(crate::tenant::service::Error::from)?;
    }
    Ok(name.to_string())
}

/// Whether a server answers now (`default` always does: the control database is
/// there). `Err`: why not, without any credential.
async fn reachable(p: &Platform, name: &str) -> Result<(), String> {
    if name == DEFAULT {
        return Ok(());
    }
    let server = opened(p, name).await.map_err(|e| match e {
        crate::fleet::Error::Down { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let probe = async {
        let c = server
            .pool
            .get()
            .await
            .map_err(|e| crate::fleet::check::reason(&crate::pg::PgError::Pool(e)))?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| crate::fleet::check::reason(&crate::pg::PgError::Db(e)))?;
        Ok(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(6), probe).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 6 s".into()),
    }
}
