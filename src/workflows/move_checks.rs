//! What a move checks before it begins (docs/moves.md), beside `move_tenant::begin`'s
//! checks of the request: both servers reachable with a superuser role, and the
//! source able to replicate logically. A refusal changes nothing.

use super::move_tenant::refuse;
use super::{Error, Runtime};
use crate::platform::Platform;
use crate::problem::Kind as ProblemKind;
use crate::tenant::{Isolation, Tenant};

/// Both the tenant's server and `to` answer, berqenas is a superuser on each
/// (PostgreSQL 15's subscriptions and `FOR TABLES IN SCHEMA` need one), and a move
/// that replicates can take a slot on the source.
pub(super) async fn servers_ready(
    rt: &Runtime,
    t: &Tenant,
    to: &str,
    to_isolation: Isolation,
) -> Result<(), Error> {
    use ProblemKind::{Conflict, Unprocessable};
    // Shared mode's moves copy rows in a transaction: no replication.
    let replicated = !(t.isolation == Isolation::Shared || to_isolation == Isolation::Shared);
    for server in [t.server.as_str(), to] {
        let view = match rt.platform.view_of(server).await {
            Ok(view) => view,
            Err(_) => {
                return Err(refuse(
                    Conflict,
                    "server_down",
                    Some("to_server"),
                    format!("to_server: server {server:?} cannot be reached"),
                ))
            }
        };
        if !view.caps.superuser {
            return Err(refuse(
            Unprocessable,
            "move_unsupported",
            Some("to_server"),
            format!("to_server: berqenas's role on server {server:?} is not a superuser, which PostgreSQL 15's logical replication needs (docs/moves.md)"),
        ));
        }
        // The source's slot needs logical decoding: without it the move would get as
        // far as its `replicate` step and be undone there.
        if replicated && server == t.server {
            logical_decoding(&view, server).await?;
        }
    }
    Ok(())
}

/// A move out of `server` copies with logical replication: refused up front, naming the
/// setting, when the server's `wal_level` is not `logical` (PostgreSQL's default is
/// `replica`, and changing it needs a restart).
async fn logical_decoding(view: &Platform, server: &str) -> Result<(), Error> {
    let level: String = view
        .pool
        .get()
        .await?
        .query_one("SELECT pg_catalog.current_setting('wal_level')", &[])
        .await?
        .get(0);
    if level == "logical" {
        return Ok(());
    }
    Err(refuse(
        ProblemKind::Unprocessable,
        "move_unsupported",
        None,
        format!("server {server:?} runs with wal_level = {level}: a move copies the tenant with logical replication, which needs wal_level = logical there (set it and restart PostgreSQL; docs/moves.md); nothing was changed"),
    ))
}
