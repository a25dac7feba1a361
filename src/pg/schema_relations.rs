//! The relations of a schema, found without reading every relation.

/// Every table, materialized view and sequence of the database with its schema's oid
/// (`schema`, `oid`, `relowner`, `relpersistence`), for a `FROM` joined on `schema`:
/// found through what depends on each schema (`pg_depend`, by its index; each of them
/// records its schema there, a dead session's left-behind temporary ones too), not by
/// `pg_class.relnamespace`, which no index serves alone: each statement sizing some
/// schemas read all of `pg_class` (about 0.13 s at 10,000 tenants), a statement per
/// schema too. `psql` at 10,231 tenants, a new session
/// each time: 500 schemas 1.48 to 1.59 s that way, 0.91 to 1.00 s this way; 50 schemas
/// 251 to 314 ms against 128 to 144 ms; the sizes of all 10,231 the same
/// (docs/scale.md). Their indexes and TOAST tables are sized with them
/// (`pg_total_relation_size`).
pub const SCHEMA_RELATIONS: &str =
    "(SELECT d.refobjid AS schema, c.oid, c.relowner, c.relpersistence
       FROM pg_catalog.pg_depend d
       JOIN pg_catalog.pg_class c ON c.oid = d.objid
      WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
        AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND c.relkind IN ('r', 'm', 'S'))";
