//! The tenants' lines of `pg_hba.conf`. berqenas owns one block of the file, between
//! two marker lines, after the file's leading `local` lines and before its first
//! `host` line (every catch-all); the rest of the file is the operator's and is kept
//! as it is. Per restricted tenant: one `host` line per allowed range naming all its
//! login roles; then one `reject` naming every restricted role. PostgreSQL takes the
//! first line that matches a connection, so a tenant's roles never reach the
//! catch-alls below. It walks the lines in order for every TCP connection, so their
//! number is kept low (`benches/network.rs` measures the cost).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use ipnet::IpNet;

use super::policy::{self, Service};
use super::Error;
use crate::store::network::Restricted;

pub const BEGIN: &str =
    "# BEGIN berqenas tenant rules: rendered from the registry, edits here are overwritten";
pub const END: &str = "# END berqenas tenant rules";

/// Statuses whose rules are in force; every other tenant's roles are refused over
/// the network (suspended or deleted: revoked until resumed or restored).
pub fn live(status: &str) -> bool {
    matches!(status, "active" | "trial" | "provisioning")
}

/// The ranges a tenant's login roles may connect from; `None`: no line (anywhere).
pub fn database_ranges(t: &Restricted) -> Option<Vec<IpNet>> {
    if !live(&t.status) {
        return Some(Vec::new());
    }
    policy::allowed(
        t.vpn_enabled,
        t.public_api,
        t.vpn_subnet.as_deref(),
        t.rules
            .iter()
            .filter_map(|r| Some((r.cidr.as_str(), Service::parse(&r.service)?))),
        Service::Postgres,
    )
}

/// The block for these tenants. `control`: ranges berqenas itself connects from as a
/// tenant (the data API over TCP), allowed for every restricted role. One line per
/// allowed range, then a single reject naming every restricted role: fewer lines for
/// PostgreSQL to walk per connection than a reject per tenant.
pub fn render(tenants: &[Restricted], control: &[IpNet]) -> String {
    let mut out = String::with_capacity(64 + tenants.len() * 160);
    out.push_str(BEGIN);
    out.push('\n');
    let mut restricted = Vec::new();
    for t in tenants {
        let Some(mut ranges) = database_ranges(t) else {
            continue;
        };
        if live(&t.status) {
            ranges.extend(control.iter().copied());
        }
        let roles = t
            .logins
            .iter()
            .map(|r| format!("\"{}\"", r.replace('"', "")))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(out, "# tenant {} ({})", t.name, t.status);
        for range in ranges {
            let _ = writeln!(out, "host all {roles} {range} scram-sha-256");
        }
        restricted.push(roles);
    }
    if !restricted.is_empty() {
        let _ = writeln!(out, "# every restricted tenant role, from anywhere else");
        let _ = writeln!(out, "host all {} all reject", restricted.join(","));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// The file with `block` in place of berqenas's previous block, or, the first time,
/// after the file's leading `local` lines (so connections over the private socket,
/// berqenas's own, never walk the tenants' lines) and before its first `host` line.
pub fn splice(file: &str, block: &str) -> String {
    let mut before = String::with_capacity(file.len());
    let mut after = String::with_capacity(file.len());
    let (mut inside, mut placed) = (false, false);
    for line in file.lines() {
        if line == BEGIN {
            inside = true;
            placed = true;
            continue;
        }
        if inside {
            inside = line != END;
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if !placed && first.starts_with("host") {
            placed = true;
        }
        let into = if placed { &mut after } else { &mut before };
        into.push_str(line);
        into.push('\n');
    }
    format!("{before}{block}{after}")
}

/// Replaces `path` with `content` all at once: a temporary file beside it with the same
/// owner and mode, synced, renamed over it, the directory synced.
pub fn write_atomically(path: &Path, content: &str) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.berqenas-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let old = std::fs::metadata(path).ok();
    let mut f = std::fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
    f.write_all(content.as_bytes())
        .map_err(Error::io("writing", &tmp))?;
    if let Some(m) = &old {
        let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(Error::io("setting the mode of", &tmp))?;
    }
    f.sync_all().map_err(Error::io("syncing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io("renaming over", path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::network::SnapshotRule;

    fn tenant(status: &str, vpn: bool, rules: &[(&str, &str)]) -> Restricted {
        Restricted {
            id: uuid::Uuid::nil(),
            name: "acme".into(),
            server: "default".into(),
            status: status.into(),
            vpn_enabled: vpn,
            public_api: true,
            vpn_subnet: vpn.then(|| "10.50.3.0/24".into()),
            logins: vec!["tenant_acme_user".into(), "tenant_acme_u_ab12".into()],
            rules: rules
                .iter()
                .map(|(c, s)| SnapshotRule {
                    cidr: c.to_string(),
                    service: s.to_string(),
                })
                .collect(),
            peers: vec![],
        }
    }

    #[test]
    fn lines_per_tenant() {
        let block = render(
            &[tenant(
                "active",
                true,
                &[("203.0.113.0/24", "postgres"), ("198.51.100.0/24", "api")],
            )],
            &[],
        );
        let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("host")).collect();
        assert_eq!(
            lines,
            [
                "host all \"tenant_acme_user\",\"tenant_acme_u_ab12\" 203.0.113.0/24 scram-sha-256",
                "host all \"tenant_acme_user\",\"tenant_acme_u_ab12\" 10.50.3.0/24 scram-sha-256",
                "host all \"tenant_acme_user\",\"tenant_acme_u_ab12\" all reject",
            ]
        );
        // Suspended: refused from everywhere.
        let block = render(&[tenant("suspended", true, &[])], &[]);
        let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("host")).collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with(" all reject"));
        // Public with only an API rule: no database line.
        let block = render(
            &[tenant("active", false, &[("198.51.100.0/24", "api")])],
            &[],
        );
        assert_eq!(block.lines().filter(|l| l.starts_with("host")).count(), 0);
    }

    #[test]
    fn splice_replaces_only_the_block_after_the_local_lines() {
        let local = "# comment\nlocal all all trust\n";
        let host = "host all all 127.0.0.1/32 scram-sha-256\n";
        let file = format!("{local}{host}");
        let block = format!("{BEGIN}\nhost all \"a\" all reject\n{END}\n");
        let once = splice(&file, &block);
        assert_eq!(once, format!("{local}{block}{host}"));
        let empty = format!("{BEGIN}\n{END}\n");
        assert_eq!(splice(&once, &empty), format!("{local}{empty}{host}"));
    }
}
