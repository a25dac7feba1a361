//! A `pg_dump` script run on another server than the one it was taken on: the roles
//! it names are the same on both (a move re-makes the tenant's roles with their
//! names), except the server's own berqenas role, whose name is each server's own
//! (`platform` on one, `berqenas` on another). What the source's role owns or was
//! granted becomes the target's role's; left as it is, the script fails on a target
//! without a role of that name, or hands the objects to whichever role has it there.

use postgres_protocol::escape::escape_identifier;

/// Where pg_dump names a role, after what: ownership, grants and revokes, default
/// privileges, a role's settings in a database, a grantor's session.
const BEFORE_A_ROLE: [&[u8]; 6] = [
    b" OWNER TO ",
    b" TO ",
    b" FROM ",
    b" FOR ROLE ",
    b"ALTER ROLE ",
    b"SESSION AUTHORIZATION ",
];

/// The statements that name roles where [`BEFORE_A_ROLE`] says.
const STATEMENTS: [&[u8]; 4] = [
    b"ALTER ",
    b"GRANT ",
    b"REVOKE ",
    b"SET SESSION AUTHORIZATION ",
];

/// `script` with the role `from` named `to` wherever pg_dump's statements name a role
/// (`ALTER ... OWNER TO`, `GRANT ... TO`, `REVOKE ... FROM`, `ALTER DEFAULT
/// PRIVILEGES FOR ROLE`, `ALTER ROLE ... IN DATABASE`, `SET SESSION AUTHORIZATION`),
/// as pg_dump writes it: bare when it needs no quotes, else quoted. Nothing else
/// changes: other names, comments, function bodies that only mention it.
pub fn with_role_renamed(script: &[u8], from: &str, to: &str) -> Vec<u8> {
    if from == to {
        return script.to_vec();
    }
    let quoted = escape_identifier(from);
    let mut forms: Vec<&[u8]> = vec![quoted.as_bytes()];
    if bare(from) {
        forms.push(from.as_bytes());
    }
    let to = escape_identifier(to);
    let mut out = Vec::with_capacity(script.len());
    for (i, line) in script.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        if STATEMENTS.iter().any(|s| line.starts_with(s)) {
            out.extend(renamed_in(line, &forms, to.as_bytes()));
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Whether pg_dump may print `name` without quotes (it still quotes keywords: both
/// forms are looked for).
fn bare(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

fn renamed_in(line: &[u8], forms: &[&[u8]], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    'scan: while at < line.len() {
        for before in BEFORE_A_ROLE {
            if !line[at..].starts_with(before) {
                continue;
            }
            let name_at = at + before.len();
            for form in forms {
                let end = name_at + form.len();
                let whole = line[name_at..].starts_with(form)
                    && line
                        .get(end)
                        .is_none_or(|b| matches!(b, b';' | b',' | b' ' | b'\r'));
                if whole {
                    out.extend_from_slice(&line[at..name_at]);
                    out.extend_from_slice(to);
                    at = end;
                    continue 'scan;
                }
            }
        }
        out.push(line[at]);
        at += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_role_renamed;

    fn renamed(script: &str) -> String {
        String::from_utf8(with_role_renamed(script.as_bytes(), "berqenas", "platform")).unwrap()
    }

    #[test]
    fn the_servers_role_is_renamed_where_a_role_is_named() {
        let script = "\
-- Name: tenant_acme; Type: DATABASE; Schema: -; Owner: berqenas
CREATE DATABASE tenant_acme WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE tenant_acme OWNER TO berqenas;
\\connect tenant_acme
ALTER SCHEMA berqenas_realtime OWNER TO \"berqenas\";
REVOKE ALL ON DATABASE tenant_acme FROM berqenas;
GRANT ALL ON DATABASE tenant_acme TO berqenas WITH GRANT OPTION;
GRANT CONNECT ON DATABASE tenant_acme TO tenant_acme_login;
ALTER DEFAULT PRIVILEGES FOR ROLE berqenas IN SCHEMA s GRANT SELECT ON TABLES TO berqenas;
ALTER ROLE berqenas IN DATABASE tenant_acme SET work_mem TO '8MB';
SET SESSION AUTHORIZATION berqenas;
ALTER TABLE berqenas_x OWNER TO berqenas_owner;
CREATE TABLE berqenas (id int);
";
        let want = "\
-- Name: tenant_acme; Type: DATABASE; Schema: -; Owner: berqenas
CREATE DATABASE tenant_acme WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE tenant_acme OWNER TO \"platform\";
\\connect tenant_acme
ALTER SCHEMA berqenas_realtime OWNER TO \"platform\";
REVOKE ALL ON DATABASE tenant_acme FROM \"platform\";
GRANT ALL ON DATABASE tenant_acme TO \"platform\" WITH GRANT OPTION;
GRANT CONNECT ON DATABASE tenant_acme TO tenant_acme_login;
ALTER DEFAULT PRIVILEGES FOR ROLE \"platform\" IN SCHEMA s GRANT SELECT ON TABLES TO \"platform\";
ALTER ROLE \"platform\" IN DATABASE tenant_acme SET work_mem TO '8MB';
SET SESSION AUTHORIZATION \"platform\";
ALTER TABLE berqenas_x OWNER TO berqenas_owner;
CREATE TABLE berqenas (id int);
";
        assert_eq!(renamed(script), want);
    }

    #[test]
    fn one_name_on_both_servers_changes_nothing() {
        let script = b"ALTER DATABASE d OWNER TO berqenas;\n";
        assert_eq!(with_role_renamed(script, "berqenas", "berqenas"), script);
    }

    #[test]
    fn a_name_that_needs_quotes_is_found_quoted() {
        let got = with_role_renamed(
            b"ALTER DATABASE d OWNER TO \"Platform Admin\";\n",
            "Platform Admin",
            "berqenas",
        );
        assert_eq!(got, b"ALTER DATABASE d OWNER TO \"berqenas\";\n");
    }
}
