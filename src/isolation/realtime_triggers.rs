//! The realtime trigger functions shared by every tenant of a database
//! (`realtime_triggers.sql`; the template's 0003 points the triggers at them). The
//! control role installs them wherever tenants are made or migrated, before any
//! template runs there: the control database at start, another server's database
//! when it is added or first opened, a template database when it is built, and a
//! database-mode tenant's own database before its template migration (one made
//! before they existed).

/// Idempotent, one simple-query batch (one implicit transaction, which the advisory
/// lock it takes lasts for).
pub const INSTALL_SQL: &str = include_str!("realtime_triggers.sql");
