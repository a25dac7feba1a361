//! berqenas: a tenant control plane for PostgreSQL.
//!
//! The binary (`src/main.rs`) is a thin layer over this library: `serve` runs the API
//! and its background worker, every other command is a client of that API.

pub mod access;
pub mod api;
pub mod apikey;
pub mod audit;
pub mod auth_providers;
pub mod backup;
pub mod cli;
pub mod console;
pub mod controlplane;
pub mod dataapi;
pub mod duration;
pub mod events;
pub mod fleet;
pub mod instances;
pub mod integrations;
pub mod isolation;
pub mod metrics;
pub mod migrate;
pub mod monitoring;
pub mod names;
pub mod network;
pub mod nullable;
pub mod ops;
pub mod pg;
pub mod platform;
pub mod problem;
pub mod quota;
pub mod realtime;
pub mod secrets;
pub mod server;
pub mod store;
pub mod template;
pub mod tenant;
pub mod tenantconfig;
pub mod vector;
pub mod workflows;

/// The version reported by `/health` and `berqenas --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
