//! An opt-in timing trace of the one-transaction create (`BERQENAS_CREATE_TRACE=1`):
//! where a create's time goes, phase by phase, for the warm pool's benchmark
//! (docs/warm_pool.md). Off by default: without the variable nothing is timed and
//! nothing is logged. With it, each create logs one `berqenas::create_trace` line at
//! `info` naming only the tenant and its phases' durations (no secret, no SQL).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("BERQENAS_CREATE_TRACE").is_ok_and(|v| v == "1"))
}

/// The phases of one create so far; `None` when tracing is off.
pub struct Trace {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
    /// Parts of a phase that ran beside another (a database-mode claim's session in
    /// its database: `connect`, `work`, `close`).
    inside: Vec<(&'static str, Duration)>,
}

/// Starts a trace, if `BERQENAS_CREATE_TRACE=1`.
pub fn start() -> Option<Trace> {
    enabled().then(|| {
        let now = Instant::now();
        Trace {
            start: now,
            last: now,
            phases: Vec::with_capacity(12),
            inside: Vec::new(),
        }
    })
}

/// Ends the phase `label` now.
pub fn mark(trace: &mut Option<Trace>, label: &'static str) {
    if let Some(t) = trace {
        let now = Instant::now();
        t.phases.push((label, now - t.last));
        t.last = now;
    }
}

/// Records `parts` of the current phase that ran beside it.
pub fn inside(trace: &mut Option<Trace>, parts: &[(&'static str, Duration)]) {
    if let Some(t) = trace {
        t.inside.extend_from_slice(parts);
    }
}

fn ms(parts: &[(&'static str, Duration)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(l, d)| format!("{l}={:.3}", d.as_secs_f64() * 1e3))
        .collect();
    parts.join(" ")
}

/// Logs the trace: `phases="settle=0.31 place=0.22 ..."` in milliseconds (and
/// `inside="connect=..."` when a phase had parts beside it).
pub fn finish(trace: Option<Trace>, tenant: &str, claimed: bool) {
    let Some(t) = trace else { return };
    tracing::info!(
        target: "berqenas::create_trace",
        claimed,
        tenant.name = %tenant,
        total_ms = format!("{:.3}", t.start.elapsed().as_secs_f64() * 1e3),
        phases = ms(&t.phases),
        inside = ms(&t.inside),
        "create timing"
    );
}
