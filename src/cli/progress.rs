//! Feedback while a long request runs (a backup, a restore, a verify): a spinner with
//! the elapsed time on a terminal, a plain line before and after otherwise, so a log
//! file or CI output shows what happened without control characters. `-o json` keeps
//! stderr quiet for scripts.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::client::ClientError;
use super::Format;

/// Runs `work`, showing `label` while it goes; `summary` describes a success (may be
/// empty) in the closing line.
pub async fn during<T>(
    label: &str,
    format: Format,
    work: impl Future<Output = Result<T, ClientError>>,
    summary: impl FnOnce(&T) -> String,
) -> Result<T, ClientError> {
    if format == Format::Json {
        return work.await;
    }
    let start = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .expect("valid template"),
        );
        s.set_message(label.to_string());
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    if spinner.is_none() {
        eprintln!("{label} ...");
    }
    let res = work.await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let took =
        humantime::format_duration(Duration::from_millis(start.elapsed().as_millis() as u64));
    match &res {
        Ok(v) => {
            let what = summary(v);
            let what = if what.is_empty() {
                String::new()
            } else {
                format!(": {what}")
            };
            eprintln!("{label}: done in {took}{what}");
        }
        Err(_) => eprintln!("{label}: failed after {took}"),
    }
    res
}
