//! Where temporary tables are, found without reading every relation.

/// Every temporary table and sequence of the database (`oid`, and `owner`: its
/// owner's name, from the role cache), a dead session's left-behind ones too, for a
/// `FROM`: found from the temporary schemas
/// (`pg_temp_N`, by the name's index) through what depends on them (`pg_depend`, by
/// its index; every table and sequence records its schema there), not by each
/// relation's owner or persistence, which no index of `pg_class` serves. Reading all
/// of `pg_class` was 67 ms (three processes) of each disk round at 10,000 tenants,
/// against 0.7 ms this way (docs/scale.md). Their indexes and TOAST tables are sized
/// with them (`pg_total_relation_size`).
pub const TEMP_RELATIONS: &str =
    "(SELECT c.oid, pg_catalog.pg_get_userbyid(c.relowner)::text AS owner
       FROM pg_catalog.pg_namespace n
       JOIN pg_catalog.pg_depend d
         ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
        AND d.refobjid = n.oid
        AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       JOIN pg_catalog.pg_class c ON c.oid = d.objid
      WHERE n.nspname LIKE 'pg\\_temp\\_%'
        AND c.relpersistence = 't' AND c.relkind IN ('r', 'm', 'S'))";
