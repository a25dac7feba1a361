//! The tenant lifecycle in one place: which status may follow which.
//!
//! ```text
//! provisioning -> trial | active | failed
//! trial        -> active | suspended | deleted
//! active       -> suspended | deleted
//! suspended    -> active | deleted
//! deleted      -> active | trial | suspended (restore within retention, to the
//!                 status it had) | purged
//! purged       -> active | trial | suspended (restore from the archive)
//! ```

use super::Status;
use crate::problem::{Kind, Problem};

/// Whether `to` may follow `from`.
pub fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Provisioning, Trial | Active | Failed)
            | (Trial, Active | Suspended | Deleted)
            | (Active, Suspended | Deleted)
            | (Suspended, Active | Deleted)
            | (Deleted, Active | Trial | Suspended | Purged)
            | (Purged, Active | Trial | Suspended)
    )
}

/// `Ok` when the transition is legal; otherwise a 409 naming the current state.
pub fn check(tenant: &str, from: Status, to: Status, action: &str) -> Result<(), Problem> {
    if allowed(from, to) {
        return Ok(());
    }
    let message = if from == to {
        format!("{tenant} is already {}", from.as_str())
    } else {
        let (from, to) = (from.as_str(), to.as_str());
        let article = if from.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("cannot {action} {tenant}: it is {from}, and {article} {from} tenant cannot become {to}")
    };
    let mut p = Problem::new(Kind::Conflict, "invalid_state", message);
    p.field = Some("status".into());
    Err(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_is_wrong_in_plain_words() {
        let same = check("acme", Status::Active, Status::Active, "resume").unwrap_err();
        assert_eq!(same.message, "acme is already active");
        let other = check("acme", Status::Active, Status::Purged, "purge").unwrap_err();
        assert_eq!(
            other.message,
            "cannot purge acme: it is active, and an active tenant cannot become purged"
        );
    }

    #[test]
    fn every_state_has_its_inverse_and_failed_is_final() {
        use Status::*;
        assert!(allowed(Active, Suspended) && allowed(Suspended, Active));
        assert!(allowed(Active, Deleted) && allowed(Deleted, Active));
        assert!(allowed(Deleted, Purged) && allowed(Purged, Active));
        // A restore brings back the status the tenant had before the delete.
        for before in [Trial, Active, Suspended] {
            assert!(
                allowed(before, Deleted) && allowed(Deleted, before),
                "{before:?}"
            );
            assert!(allowed(Purged, before), "{before:?}");
        }
        assert!(Status::ALL.iter().all(|&s| !allowed(Failed, s)));
        assert!(!allowed(Active, Purged), "purge only after a soft delete");
        assert!(!allowed(Suspended, Suspended));
        let e = check("acme", Deleted, Deleted, "delete").unwrap_err();
        assert_eq!(e.kind, Kind::Conflict);
        assert_eq!(e.message, "acme is already deleted");
    }
}
