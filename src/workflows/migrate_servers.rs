//! `migrate.run` on every server (docs/servers.md): each tenant's unit runs on a
//! session of its own server, and each server's template database is brought to the
//! template the run migrates to, so a database-mode create there clones the current
//! one. The throw-away session roles a run makes on a server other than `default` are
//! declared per server (`server_roles`: the run's role prefix, and the server in the
//! object's `database` field) before the first is made, so the engine drops whatever
//! a crash left of them there too.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::{failed, Runtime};
use crate::migrate::{PendingTenant, ServerFailure};
use crate::ops::{Object, Run, StepError, StepFuture};
use crate::platform::Platform;
use crate::store::servers::DEFAULT;

/// The scratch object kind of a run's throw-away roles on another server.
pub const SERVER_ROLES: &str = "server_roles";

/// The platform as seen from `server` (`default`: the platform itself). The embedded
/// cluster trusts its own socket; another server's roles log in with their password.
pub(super) async fn view(rt: &Runtime, server: &str) -> Result<Platform, StepError> {
    if server == DEFAULT {
        return Ok(rt.platform.clone());
    }
    let s = super::servers::opened(&rt.platform, server)
        .await
        .map_err(failed)?;
    let mut view = rt.platform.on(&s);
    view.embedded = false;
    Ok(view)
}

/// A server's view if it answers now (a session taken from its pool).
async fn reachable(rt: &Runtime, server: &str) -> Option<Platform> {
    let view = match view(rt, server).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(server, error = %e, "a server of a migration run cannot be opened");
            return None;
        }
    };
    match view.pool.get().await {
        Ok(_) => Some(view),
        Err(e) => {
            tracing::warn!(server, error = %e, "a server of a migration run cannot be reached");
            None
        }
    }
}

/// Declares the run's throw-away roles on `default` and on every server of `pending`
/// that answers (with what earlier attempts of the step declared: a run finished after
/// a crash keeps them), and returns those servers' views. A tenant whose server is not
/// among them fails its unit without making anything there.
pub(super) async fn declare(
    rt: &Runtime,
    run: &mut Run,
    step: &str,
    prefix: &str,
    pending: &[PendingTenant],
) -> Result<HashMap<String, Platform>, StepError> {
    let mut views = HashMap::new();
    views.insert(DEFAULT.to_string(), rt.platform.clone());
    let servers: BTreeSet<&str> = pending
        .iter()
        .map(|t| t.server.as_str())
        .filter(|s| *s != DEFAULT)
        .collect();
    for server in servers {
        if let Some(v) = reachable(rt, server).await {
            views.insert(server.to_string(), v);
        }
    }
    let mut objects = run.objects(step);
    let mut wanted = vec![Object::scratch("roles", prefix, None)];
    wanted.extend(
        views
            .keys()
            .filter(|s| s.as_str() != DEFAULT)
            .map(|s| Object::scratch(SERVER_ROLES, prefix, Some(s))),
    );
    for o in wanted {
        if !objects
            .iter()
            .any(|d| d.kind == o.kind && d.name == o.name && d.database == o.database)
        {
            objects.push(o);
        }
    }
    let mut on: Vec<&String> = views.keys().collect();
    on.sort();
    run.intend(objects, json!({"servers": on})).await?;
    Ok(views)
}

/// Every registered server but `default` (whose template database is built at start)
/// whose template database is missing or older than the process's template.
pub(super) async fn stale_templates(
    rt: &Runtime,
) -> Result<Vec<String>, crate::tenant::service::Error> {
    let rows = crate::store::servers::list(&rt.pool.get().await?).await?;
    let mut stale = Vec::new();
    for row in rows.iter().filter(|r| r.name != DEFAULT) {
        let Some(view) = reachable(rt, &row.name).await else {
            continue;
        };
        match crate::tenant::database_mode::template_stale_on(rt, &view, &row.name).await {
            Ok(false) => {}
            Ok(true) => stale.push(row.name.clone()),
            Err(e) => {
                tracing::warn!(server = %row.name, error = %e, "could not read a server's template database");
                stale.push(row.name.clone());
            }
        }
    }
    Ok(stale)
}

/// Brings the template database of every registered server but `default` to the
/// run's template (`template`, the SQL journaled with the run), or the process's when
/// that is newer (a run finished by a later release); a rebuild only where it is
/// stale. Returns the servers it could not reach or rebuild, with why. Run again, it
/// finds them current.
pub(super) async fn refresh_templates(
    rt: &Runtime,
    template: &crate::template::Template,
) -> Result<Vec<ServerFailure>, StepError> {
    let template = if template.latest_version() >= rt.template.latest_version() {
        template.clone()
    } else {
        rt.template.clone()
    };
    let rows = crate::store::servers::list(&rt.pool.get().await.map_err(failed)?)
        .await
        .map_err(failed)?;
    let mut failures = Vec::new();
    for row in rows.iter().filter(|r| r.name != DEFAULT) {
        let done = match view(rt, &row.name).await {
            Ok(mut view) => {
                view.template = template.clone();
                crate::tenant::database_mode::ensure_template_on(rt, &view, &row.name)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = done {
            tracing::warn!(server = %row.name, %error, "could not bring a server's template database to the new template");
            failures.push(ServerFailure {
                server: row.name.clone(),
                error: crate::store::outbox::data::redact(&error),
            });
        }
    }
    Ok(failures)
}

/// The cleaner of [`SERVER_ROLES`]: the run's throw-away roles on that server, as
/// `roles` drops them on `default`.
pub(super) fn clean_server_roles<'a>(rt: &'a Runtime, o: &'a Object) -> StepFuture<'a> {
    Box::pin(async move {
        let server = o
            .database
            .as_deref()
            .ok_or_else(|| StepError::Fenced("server roles without a server".into()))?;
        // A server removed since (only an empty one can be) took its roles with it.
        if let Err(crate::fleet::Error::NotFound(_)) =
            super::servers::opened(&rt.platform, server).await
        {
            return Ok(Value::Null);
        }
        let there = Runtime {
            platform: view(rt, server).await?,
            engine: rt.engine.clone(),
            holds: Default::default(),
        };
        let roles = Object {
            kind: "roles".into(),
            name: o.name.clone(),
            database: None,
            scratch: true,
        };
        super::clean_roles(&there, &roles).await?;
        Ok(Value::Null)
    })
}
