//! The attack suite: each case is an attack a tenant can make with the credentials
//! berqenas hands out (its login role, users added with `tenant user add`, its API
//! key), made exactly as an attacker would, and asserted to be held in every
//! isolation mode it applies to. New capabilities add their own attacks here.

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/process.rs"]
mod process;
#[path = "../support/state.rs"]
#[allow(dead_code)]
mod support;

mod data_api;
mod input;
