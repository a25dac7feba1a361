//! The model of `tests/model/main.rs`: the operations a sequence draws, and what each
//! should do to a tenant's status, rows, backups, connection limit and audit trail.

use std::collections::{BTreeMap, BTreeSet};

use berqenas::workflows::{backups, changes, lifecycle, offboarding, restores};
use proptest::prelude::*;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Suspend,
    Resume,
    Delete,
    /// Of a deleted tenant (undelete) or a purged one (rebuild from the archive).
    Restore,
    Purge,
    Backup,
    /// In place, of one of the tenant's backups (the index, modulo how many).
    RestoreBackup(u8),
    /// `max_connections` set to 5 + n % 10 (forced).
    Quotas(u8),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub tenant: usize,
    pub op: Op,
    /// If the model refuses `op`, run one it allows instead (chosen by `op`'s seed):
    /// sequences get deeper than refusals alone let them.
    pub allowed: bool,
    /// Run twice at once.
    pub duplicate: bool,
    /// Stop at a boundary of the operation's kind (the index, modulo how many) and
    /// kill the engine there.
    pub kill: Option<u8>,
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Suspend),
        3 => Just(Op::Resume),
        3 => Just(Op::Delete),
        3 => Just(Op::Restore),
        2 => Just(Op::Purge),
        3 => Just(Op::Backup),
        3 => any::<u8>().prop_map(Op::RestoreBackup),
        2 => any::<u8>().prop_map(Op::Quotas),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    (
        0..2usize,
        op(),
        proptest::bool::weighted(0.7),
        proptest::bool::weighted(0.25),
        proptest::option::weighted(0.3, any::<u8>()),
    )
        .prop_map(|(tenant, op, allowed, duplicate, kill)| Step {
            tenant,
            op,
            allowed,
            duplicate,
            kill,
        })
}

pub fn sequence() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 10..=14)
}

/// What the model holds of one tenant.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub status: &'static str,
    /// The status a restore of the deleted or purged tenant brings back.
    pub previous: Option<&'static str>,
    pub rows: BTreeSet<String>,
    /// Backups taken by the sequence (id, the rows they hold).
    pub backups: Vec<(String, BTreeSet<String>)>,
    /// The `max_connections` a quota change set (None: the plan's).
    pub max_connections: Option<i32>,
    /// How many audit entries of each action the operations that took effect wrote.
    pub audit: BTreeMap<&'static str, i64>,
}

/// The audit actions the model counts (`backup_created`: of manual backups).
pub const AUDITED: [&str; 8] = [
    "tenant_suspended",
    "tenant_resumed",
    "tenant_soft_deleted",
    "tenant_restored",
    "tenant_purged",
    "backup_created",
    "backup_restored",
    "quotas_updated",
];

impl Model {
    pub fn live(&self) -> bool {
        matches!(self.status, "active" | "trial" | "suspended")
    }

    pub fn logs_in(&self) -> bool {
        matches!(self.status, "active" | "trial")
    }

    /// The kind the operation runs on this tenant now.
    pub fn kind(&self, op: Op) -> &'static str {
        match op {
            Op::Suspend => lifecycle::SUSPEND,
            Op::Resume => lifecycle::RESUME,
            Op::Delete => offboarding::DELETE,
            Op::Restore if self.status == "purged" => offboarding::REBUILD,
            Op::Restore => offboarding::RESTORE,
            Op::Purge => offboarding::PURGE,
            Op::Backup => backups::TAKE,
            Op::RestoreBackup(_) => restores::RESTORE,
            Op::Quotas(_) => changes::QUOTAS,
        }
    }

    /// Whether the operation is allowed now (else it must be refused).
    pub fn allows(&self, op: Op) -> bool {
        match op {
            Op::Suspend => matches!(self.status, "active" | "trial"),
            Op::Resume => self.status == "suspended",
            Op::Delete => self.live(),
            Op::Restore => matches!(self.status, "deleted" | "purged"),
            Op::Purge => self.status == "deleted",
            Op::Backup => self.live(),
            Op::RestoreBackup(_) => self.live() && !self.backups.is_empty(),
            Op::Quotas(_) => self.live(),
        }
    }

    /// Whether the operation may take effect (a quota change of a deleted or purged
    /// tenant may be refused or recorded: either is fine, a 5xx is not).
    pub fn may(&self, op: Op) -> bool {
        self.allows(op) || matches!(op, Op::Quotas(_))
    }

    /// `op`, or if the model refuses it and `instead`, one it allows.
    pub fn choose(&self, op: Op, instead: bool) -> Op {
        if !instead || self.allows(op) {
            return op;
        }
        let seed = match op {
            Op::Suspend => 0,
            Op::Resume => 1,
            Op::Delete => 2,
            Op::Restore => 3,
            Op::Purge => 4,
            Op::Backup => 5,
            Op::RestoreBackup(n) | Op::Quotas(n) => n as usize,
        };
        let ok: Vec<Op> = [
            Op::Suspend,
            Op::Resume,
            Op::Delete,
            Op::Restore,
            Op::Purge,
            Op::Backup,
            Op::RestoreBackup(seed as u8),
            Op::Quotas(seed as u8),
        ]
        .into_iter()
        .filter(|&o| self.allows(o))
        .collect();
        ok.get(seed % ok.len().max(1)).copied().unwrap_or(op)
    }

    /// Whether more than one of two duplicates may take effect.
    pub fn repeatable(op: Op) -> bool {
        matches!(op, Op::Backup | Op::RestoreBackup(_) | Op::Quotas(_))
    }

    /// The operation took effect, `times` times (`backup`: the one restored).
    pub fn apply(&mut self, op: Op, backup: Option<&BTreeSet<String>>, times: i64) {
        let action = match op {
            Op::Suspend => "tenant_suspended",
            Op::Resume => "tenant_resumed",
            Op::Delete => "tenant_soft_deleted",
            Op::Restore => "tenant_restored",
            Op::Purge => "tenant_purged",
            Op::Backup => "backup_created",
            Op::RestoreBackup(_) => "backup_restored",
            Op::Quotas(_) => "quotas_updated",
        };
        *self.audit.entry(action).or_default() += times;
        match op {
            Op::Suspend => self.status = "suspended",
            Op::Resume => self.status = "active",
            Op::Delete => {
                self.previous = Some(self.status);
                self.status = "deleted";
            }
            Op::Restore => {
                self.status = self.previous.take().expect("a restore without a delete");
            }
            Op::Purge => self.status = "purged",
            Op::Backup => {}
            Op::RestoreBackup(_) => self.rows = backup.expect("the backup restored").clone(),
            Op::Quotas(n) => self.max_connections = Some(connections(n)),
        }
    }
}

pub fn connections(n: u8) -> i32 {
    5 + (n % 10) as i32
}
