//! Where temporary tables are, found without reading every relation.

use std::sync::LazyLock;

use super::schema_relations::SCHEMA_RELATIONS;

/// Every temporary table and sequence of the database (`oid`, and `owner`: its
/// owner's name, from the role cache), a dead session's left-behind ones too, for a
/// `FROM`: the relations of the temporary schemas (`pg_temp_N`, by the name's index;
/// their relations through `pg_depend`, see [`SCHEMA_RELATIONS`]), not found by each
/// relation's owner or persistence, which no index of `pg_class` serves. Reading all
/// of `pg_class` was 67 ms (three processes) of each disk round at 10,000 tenants,
/// against 0.7 ms this way (docs/scale.md). Their indexes and TOAST tables are sized
/// with them (`pg_total_relation_size`).
pub static TEMP_RELATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(SELECT r.oid, pg_catalog.pg_get_userbyid(r.relowner)::text AS owner
            FROM pg_catalog.pg_namespace n JOIN {SCHEMA_RELATIONS} r ON r.schema = n.oid
           WHERE n.nspname LIKE 'pg\\_temp\\_%' AND r.relpersistence = 't')"
    )
});
