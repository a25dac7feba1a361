//! The console's tenant list: a name search and filters on top of the keyset page
//! (`t.id > after ORDER BY t.id`), so a page costs the same on the last of 10,000
//! tenants as on the first.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{tenant, Result, Tenant, COLUMNS, JOINS};

/// What the list is narrowed to; `None` is "any".
#[derive(Debug, Default, Clone)]
pub struct Filter<'a> {
    /// A part of the name (matched literally: `%` and `_` are not wildcards).
    pub name: Option<&'a str>,
    pub status: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub isolation: Option<&'a str>,
}

/// `s` as a literal inside a LIKE pattern.
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A page of tenants matching `f`, in creation order, after the tenant `after`.
pub async fn search(
    c: &impl GenericClient,
    f: &Filter<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Tenant>> {
    let pattern = f.name.map(|n| format!("%{}%", like_literal(n)));
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM berqenas.tenants t {JOINS}
                 WHERE ($1::text IS NULL OR t.name LIKE $1)
                   AND ($2::text IS NULL OR t.status = $2)
                   AND ($3::text IS NULL OR t.plan = $3)
                   AND ($4::text IS NULL OR t.isolation = $4)
                   AND ($5::uuid IS NULL OR t.id > $5)
                 ORDER BY t.id LIMIT $6"
            ),
            &[&pattern, &f.status, &f.plan, &f.isolation, &after, &limit],
        )
        .await?;
    rows.iter().map(tenant).collect()
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn wildcards_are_literal() {
        assert_eq!(like_literal("a_b%c\\"), "a\\_b\\%c\\\\");
        assert_eq!(like_literal("acme"), "acme");
    }
}
