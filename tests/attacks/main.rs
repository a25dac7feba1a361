//! The attack suite: each case is an attack a tenant can make with the credentials
//! berqenas hands out (its login role, users added with `tenant user add`, its API
//! key), made exactly as an attacker would, and asserted to be held in every
//! isolation mode it applies to. New capabilities add their own attacks here.
//!
//! The attacks share one cluster and run in parallel. Those that assert "bad input
//! changes nothing" compare the whole catalog and registry before and after
//! (`common::whole_state`), so they hold [`exclusive`] while every other attack, which
//! creates tenants and changes state, holds [`shared`].

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/process.rs"]
mod process;
#[path = "../support/state.rs"]
#[allow(dead_code)]
mod support;

mod backups;
mod data_api;
mod input;
mod limits;
mod offboarding;
mod roles;
mod roles_unchanged;
mod stall;
mod temp;
mod traps;
mod workers;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static STATE: RwLock<()> = RwLock::const_new(());

/// For an attack that compares the whole state before and after: nothing else runs.
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    STATE.write().await
}

/// For every other attack: it may run beside others, never beside an [`exclusive`] one.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    STATE.read().await
}
