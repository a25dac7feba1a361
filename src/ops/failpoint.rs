//! Failpoints, for crash tests. Every step boundary of every operation kind is one:
//! `<kind>/<step>/before` and `<kind>/<step>/after`. `BERQENAS_FAILPOINT` naming one
//! kills the process with SIGKILL right there, as an operator's `kill -9` would. A test
//! running engines in its own process arms one on one engine instead: the operation
//! stops there for good (its future never finishes) until the test kills the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The name of a step boundary.
pub fn boundary(kind: &str, step: &str, at: At) -> String {
    format!("{kind}/{step}/{}", at.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Before,
    After,
}

impl At {
    pub fn as_str(self) -> &'static str {
        match self {
            At::Before => "before",
            At::After => "after",
        }
    }
}

/// Kills the process here when `BERQENAS_FAILPOINT` names this point.
pub fn kill_if_named(name: &str) {
    if std::env::var("BERQENAS_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: killing the process");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Failpoints armed on one engine (tests in one process).
#[derive(Default, Clone)]
pub struct Armed(Arc<Mutex<HashMap<String, Arc<Notify>>>>);

impl Armed {
    /// Arms `name`; the returned notify fires when an operation reaches it.
    pub fn arm(&self, name: &str) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), n.clone());
        n
    }

    pub fn disarm_all(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// At a boundary: the environment's failpoint kills the process; an armed one
    /// stops this operation here for good.
    pub async fn reach(&self, name: &str) {
        kill_if_named(name);
        let armed = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(n) = armed {
            tracing::warn!(
                failpoint = name,
                "armed failpoint reached: this operation stops here"
            );
            n.notify_one();
            std::future::pending::<()>().await;
        }
    }
}
