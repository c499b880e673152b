//! The one-screen summary `run` prints to stdout: totals, a line per path,
//! and the first negative reply each path drew, verbatim.

use std::fmt::Write as _;
use std::path::Path;

use super::record::{RunRecord, Totals};
use crate::smtp::record::Outcome;

/// Renders the summary of a finished run.
pub fn render(record: &RunRecord, directory: &Path) -> String {
    let mut out = String::new();
    let totals = &record.totals;
    let _ = writeln!(out, "run {} ({})", record.run_id, record.scenario.name);
    let _ = writeln!(
        out,
        "messages {}: accepted {}, deferred {}, rejected {}, failed {}, not sent {}; {} attempts, {} cleared after retry",
        totals.planned,
        totals.accepted,
        totals.deferred,
        totals.rejected,
        totals.failed,
        totals.not_sent,
        totals.attempts,
        totals.cleared_after_retry
    );

    let _ = writeln!(
        out,
        "\n{:<16} {:<12} {:<16} {:>8} {:>8} {:>8} {:>6} {:>8} {:>7}",
        "path", "pool", "source ip", "accepted", "deferred", "rejected", "failed", "not sent", "cleared"
    );
    for path in &record.paths {
        let counts = Totals::from_messages(record.messages.iter().filter(|message| message.path == path.name));
        let source = path.source_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<16} {:>8} {:>8} {:>8} {:>6} {:>8} {:>7}",
            path.name,
            path.pool,
            source,
            counts.accepted,
            counts.deferred,
            counts.rejected,
            counts.failed,
            counts.not_sent,
            counts.cleared_after_retry
        );
    }

    let mut shown = Vec::new();
    for attempt in &record.attempts {
        if attempt.outcome == Outcome::Accepted || shown.contains(&attempt.path.as_str()) {
            continue;
        }
        shown.push(attempt.path.as_str());
        if shown.len() == 1 {
            let _ = writeln!(out, "\nfirst negative reply per path:");
        }
        let what = match (&attempt.reply, &attempt.failure) {
            (Some(reply), _) => reply.lines.join(" | "),
            (None, Some(failure)) => format!("no reply: {failure}"),
            (None, None) => "no reply".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} ({} -> {}): {}",
            attempt.path,
            attempt.started_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            attempt.seed,
            what
        );
    }

    let _ = writeln!(out, "\nrecord: {}", directory.join("run.json").display());
    let _ = writeln!(out, "transcripts: {}", directory.join("transcripts").display());
    out
}
