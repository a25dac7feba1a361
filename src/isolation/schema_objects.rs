//! What a schema holds, as labels that name each object the same way whichever schema
//! it is in: two schemas made from one template give the same labels, so the labels
//! of one that the other lacks are what a copy of rows between them would leave
//! behind (a move into shared mode, docs/moves.md).
//!
//! Every kind of object a tenant's owner role can make in its schema is listed:
//! relations (tables, views, materialized views, foreign tables, sequences), columns
//! with their types, `NOT NULL`, identity, generation and defaults, indexes, constraints, triggers, rules, row security policies,
//! functions and procedures (aggregates too), types (domains, enums, ranges,
//! composites), operators, collations, statistics objects, text search
//! configurations and dictionaries, conversions, and the comments on relations and
//! columns (the pool keeps its own: a tenant's would be lost). A type defined in the schema is
//! named without its schema, so a column of the template's own type reads the same on
//! both sides.

use std::collections::BTreeSet;

use tokio_postgres::GenericClient;

/// One label per object of `schema`: a relation by its name (`notes`), a column as
/// `table.column type`, then ` not null`, ` identity`, ` generated` and ` default
/// expr` when it has them (the expression with the schema's own name taken out, so a
/// sequence of the schema reads the same in both; read without its table, which
/// `pg_get_expr` would otherwise lock: a tenant holding a lock on its table must not
/// hold up the move's check), anything else as `kind name`, with
/// its table when it has one (`index notes.notes_idx`, `trigger notes.audit`,
/// `function touch`), and a comment on a relation or a column as `comment notes.*
/// 'text'` or `comment notes.color 'text'` (its first 60 characters, and a hash of
/// the rest when it is longer).
const LABELS: &str = "
WITH s AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1),
rel AS (SELECT c.oid, c.relname::text AS name, c.relkind FROM pg_catalog.pg_class c, s
         WHERE c.relnamespace = s.oid)
SELECT name FROM rel WHERE relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'type ' || name FROM rel WHERE relkind = 'c'
UNION ALL
SELECT 'index ' || t.relname || '.' || r.name FROM rel r
  JOIN pg_catalog.pg_index i ON i.indexrelid = r.oid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
UNION ALL
SELECT r.name || '.' || a.attname || ' ' ||
       CASE WHEN t.typnamespace = (SELECT oid FROM s) THEN t.typname::text
            ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity' ELSE '' END
       || CASE a.attgenerated WHEN 's' THEN ' generated' ELSE '' END
       || CASE WHEN a.attgenerated = '' THEN
            coalesce(' default ' || pg_catalog.replace(pg_catalog.pg_get_expr(d.adbin, 0),
                                                       pg_catalog.quote_ident($1) || '.', ''), '')
          ELSE '' END
  FROM rel r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname <> 'tenant_id'
UNION ALL
SELECT 'comment ' || r.name || '.' || coalesce(a.attname::text, '*') || ' '
       || pg_catalog.quote_literal(pg_catalog.left(d.description, 60))
       || CASE WHEN pg_catalog.length(d.description) > 60
               THEN ' (' || pg_catalog.left(pg_catalog.md5(d.description), 8) || ')' ELSE '' END
  FROM rel r JOIN pg_catalog.pg_description d
    ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.objsubid AND d.objsubid > 0
 WHERE a.attname IS DISTINCT FROM 'tenant_id'
UNION ALL
SELECT 'constraint ' || r.name || '.' || k.conname FROM rel r
  JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid
UNION ALL
SELECT 'trigger ' || r.name || '.' || g.tgname FROM rel r
  JOIN pg_catalog.pg_trigger g ON g.tgrelid = r.oid AND NOT g.tgisinternal
UNION ALL
SELECT 'rule ' || r.name || '.' || w.rulename FROM rel r
  JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid AND w.rulename <> '_RETURN'
UNION ALL
SELECT 'policy ' || r.name || '.' || p.polname FROM rel r
  JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate ' ELSE 'function ' END
       || p.proname FROM pg_catalog.pg_proc p, s WHERE p.pronamespace = s.oid
UNION ALL
SELECT 'type ' || t.typname FROM pg_catalog.pg_type t, s
 WHERE t.typnamespace = s.oid AND t.typtype IN ('d', 'e', 'r')
UNION ALL
SELECT 'operator ' || o.oprname FROM pg_catalog.pg_operator o, s WHERE o.oprnamespace = s.oid
UNION ALL
SELECT 'collation ' || c.collname FROM pg_catalog.pg_collation c, s WHERE c.collnamespace = s.oid
UNION ALL
SELECT 'statistics ' || x.stxname FROM pg_catalog.pg_statistic_ext x, s WHERE x.stxnamespace = s.oid
UNION ALL
SELECT 'text search configuration ' || f.cfgname FROM pg_catalog.pg_ts_config f, s
 WHERE f.cfgnamespace = s.oid
UNION ALL
SELECT 'text search dictionary ' || d.dictname FROM pg_catalog.pg_ts_dict d, s
 WHERE d.dictnamespace = s.oid
UNION ALL
SELECT 'conversion ' || v.conname FROM pg_catalog.pg_conversion v, s WHERE v.connamespace = s.oid";

/// The labels of everything in `schema` (empty when there is no such schema).
pub async fn labels(
    c: &impl GenericClient,
    schema: &str,
) -> Result<BTreeSet<String>, tokio_postgres::Error> {
    Ok(c.query(LABELS, &[&schema])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// What `schema` (read on `c`) holds that `other` (read on `d`) does not, in label
/// order: a relation's parts (its columns, indexes...) are left out when the relation
/// itself is, so each missing table is named once.
pub async fn missing_from(
    (c, schema): (&impl GenericClient, &str),
    (d, other): (&impl GenericClient, &str),
) -> Result<Vec<String>, tokio_postgres::Error> {
    let (ours, theirs) = tokio::join!(labels(c, schema), labels(d, other));
    let (ours, theirs) = (ours?, theirs?);
    let missing: BTreeSet<&String> = ours.difference(&theirs).collect();
    let whole: BTreeSet<&str> = missing
        .iter()
        .filter(|l| !l.contains(' ') && !l.contains('.'))
        .map(|l| l.as_str())
        .collect();
    Ok(missing
        .into_iter()
        .filter(|l| !part_of(l).is_some_and(|r| whole.contains(r)))
        .cloned()
        .collect())
}

/// The relation a label's object belongs to (`notes` of `notes.color text` and of
/// `trigger notes.audit`), if it belongs to one.
fn part_of(label: &str) -> Option<&str> {
    let named = match label.split_once(' ') {
        Some((kind, rest)) if !kind.contains('.') => rest,
        _ => label,
    };
    named.split_once('.').map(|(relation, _)| relation)
}

#[cfg(test)]
mod tests {
    use super::part_of;

    #[test]
    fn a_label_names_its_relation() {
        assert_eq!(part_of("notes.color text"), Some("notes"));
        assert_eq!(part_of("trigger notes.audit"), Some("notes"));
        assert_eq!(part_of("constraint notes.notes_pkey"), Some("notes"));
        assert_eq!(part_of("function touch"), None);
        assert_eq!(part_of("notes"), None);
        assert_eq!(part_of("index notes.notes_idx"), Some("notes"));
        assert_eq!(part_of("type mood"), None);
        assert_eq!(part_of("comment notes.* 'ours'"), Some("notes"));
        assert_eq!(part_of("comment notes.color 'a.b'"), Some("notes"));
    }
}
