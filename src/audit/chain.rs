//! Verifying the audit trail's hash chain: every row's hash is recomputed here, in Rust,
//! from its stored fields, and every row must point at the hash of the row before it;
//! the chain's head must name the last row. The first link that does not hold is
//! reported, with the row's id and what is wrong.

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::store::audit as store;

/// The hash the first row points at.
pub const GENESIS: [u8; 32] = [0; 32];

const BATCH: i64 = 5000;

/// The outcome of `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// Whether every link holds.
    pub ok: bool,
    /// Rows checked (up to the first broken link).
    pub rows: i64,
    /// The id of the last row of the chain, as its head records it.
    pub head_id: Option<i64>,
    /// The first broken link, when `ok` is false.
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrokenLink {
    /// The row at which the chain breaks.
    pub id: i64,
    /// What is wrong there.
    pub problem: String,
}

/// Hash of a row given its predecessor's hash and its canonical bytes.
pub fn link(prev: &[u8], canonical: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().to_vec()
}

fn broken(rows: i64, head_id: Option<i64>, id: i64, problem: String) -> Verification {
    Verification {
        ok: false,
        rows,
        head_id,
        broken: Some(BrokenLink { id, problem }),
    }
}

/// Walks the whole chain in id order. Run it in one snapshot (a REPEATABLE READ
/// transaction), so appends made meanwhile are neither half seen nor missed.
pub async fn verify(c: &impl GenericClient) -> crate::store::Result<Verification> {
    let Some((head_id, head_hash, head_count)) = store::head(c).await? else {
        return Ok(broken(0, None, 0, "the chain's head row is missing".into()));
    };
    let mut expected: Vec<u8> = GENESIS.to_vec();
    let mut previous: Option<i64> = None;
    let mut rows = 0i64;
    loop {
        let batch = store::links(c, previous.unwrap_or(i64::MIN), BATCH).await?;
        for r in &batch {
            let id = r.id;
            let (prev_hash, hash, canonical) = (r.prev_hash.clone(), r.hash.clone(), &r.canonical);
            let (Some(prev_hash), Some(hash)) = (prev_hash, hash) else {
                return Ok(broken(rows, head_id, id, format!(
                    "row {id} has no hash: it was written around the chain (with its trigger disabled)"
                )));
            };
            if prev_hash != expected {
                let problem = match previous {
                    None => format!(
                        "row {id} is the first row but does not point at the chain's start: rows before it were removed"
                    ),
                    Some(p) => format!(
                        "row {id} does not point at the hash of row {p} before it: a row between them was removed, or row {p}'s hash was rewritten"
                    ),
                };
                return Ok(broken(rows, head_id, id, problem));
            }
            if link(&prev_hash, canonical) != hash {
                return Ok(broken(
                    rows,
                    head_id,
                    id,
                    format!("row {id} was altered: its fields do not match its hash"),
                ));
            }
            expected = hash;
            previous = Some(id);
            rows += 1;
        }
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    if previous != head_id || expected != head_hash {
        let problem = match (previous, head_id) {
            (Some(last), Some(h)) if h > last => format!(
                "the chain ends at row {last}, but its head records row {h} as the last: rows after {last} were removed"
            ),
            (None, Some(h)) => format!("the chain is empty, but its head records row {h}: every row was removed"),
            (Some(last), _) => format!("row {last} is the last row, but the chain's head does not record it: the head or that row was rewritten"),
            (None, None) => "the chain's head does not match its empty start".to_string(),
        };
        return Ok(broken(
            rows,
            head_id,
            head_id.or(previous).unwrap_or(0),
            problem,
        ));
    }
    if rows != head_count {
        return Ok(broken(
            rows,
            head_id,
            head_id.unwrap_or(0),
            format!("the chain has {rows} rows but its head counts {head_count}: rows were removed and the chain rewritten"),
        ));
    }
    Ok(Verification {
        ok: true,
        rows,
        head_id,
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_depends_on_both_halves() {
        let a = link(&GENESIS, b"[1]");
        assert_eq!(a.len(), 32);
        assert_ne!(a, link(&GENESIS, b"[2]"));
        assert_ne!(a, link(&a, b"[1]"));
        assert_eq!(a, link(&GENESIS, b"[1]"));
    }
}
