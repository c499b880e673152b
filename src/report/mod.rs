//! The evidence packet: `report.md`, written into every run directory, for a
//! postmaster to send to the receiver (Proofpoint's support, a recipient's
//! admin). IPs are given in full and times in UTC, because reputation is
//! tied to the exact address and the receiver searches its logs by time.
//! The same data renders as JSON, and the gate criteria as JUnit XML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::gate::{Criterion, Verdict};
use crate::run::record::{AttemptRecord, RecordIndex, RunRecord};
use crate::smtp::record::Outcome;

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f UTC";

/// Renders the Markdown evidence packet.
pub fn markdown(record: &RunRecord, verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Deliverability evidence: {}\n", record.scenario.name);
    let _ = writeln!(out, "**Checkpoint: {}** ({})\n", verdict.checkpoint.as_str(), verdict.checkpoint.action());
    if !verdict.complete {
        let _ = writeln!(out, "**This run is incomplete and is not a verdict on the receiver:**\n");
        for reason in &verdict.incomplete {
            let _ = writeln!(out, "- {}", escape(reason));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| run | `{}` |", record.run_id);
    let _ = writeln!(out, "| started | {} |", record.started_at.format(TIME_FORMAT));
    let _ = writeln!(out, "| finished | {} |", record.finished_at.format(TIME_FORMAT));
    let _ = writeln!(out, "| From | {} |", escape(&record.sender.from));
    let _ = writeln!(out, "| envelope sender | {} |", escape(&record.sender.mail_from));
    let signing: Vec<String> =
        record.dkim.iter().map(|dkim| format!("d={} s={} ({})", dkim.domain, dkim.selector, dkim.algorithm)).collect();
    let _ = writeln!(out, "| DKIM | {} |", if signing.is_empty() { "none".to_string() } else { signing.join(", ") });
    let mut domains: Vec<&str> = record.seeds.iter().map(|seed| crate::scenario::address::domain_of(seed)).collect();
    domains.sort();
    domains.dedup();
    let _ = writeln!(out, "| recipient domains | {} |", domains.join(", "));
    let _ = writeln!(out, "| tool | {} |", record.tool);

    context_section(&mut out, record);
    diagnosis_section(&mut out, verdict);
    paths_section(&mut out, record);
    evidence_section(&mut out, record);
    control_section(&mut out, record);
    missing_section(&mut out, record);
    replies_section(&mut out, record);
    providers_section(&mut out, verdict);
    criteria_section(&mut out, &verdict.criteria);
    let _ = writeln!(
        out,
        "\nThe complete record, with every SMTP transcript, is in `run.json` and `transcripts/` of the run directory."
    );
    out
}

fn context_section(out: &mut String, record: &RunRecord) {
    let context = &record.context;
    if context.remediation.is_empty()
        && context.current_rate_limit.is_none()
        && context.contact.is_none()
        && context.ticket.is_none()
        && context.notes.is_empty()
    {
        return;
    }
    let _ = writeln!(out, "\n## Context\n");
    if !context.remediation.is_empty() {
        let _ = writeln!(out, "Remediation done before this test:\n");
        for step in &context.remediation {
            let _ = writeln!(out, "- {}", escape(step));
        }
        out.push('\n');
    }
    if let Some(rate) = &context.current_rate_limit {
        let _ = writeln!(out, "Current rate limit: {}\n", escape(rate));
    }
    if let Some(ticket) = &context.ticket {
        let _ = writeln!(out, "Ticket: {}\n", escape(ticket));
    }
    if let Some(contact) = &context.contact {
        let _ = writeln!(out, "Contact: {}\n", escape(contact));
    }
    for note in &context.notes {
        let _ = writeln!(out, "- {}", escape(note));
    }
}

fn diagnosis_section(out: &mut String, verdict: &Verdict) {
    let _ = writeln!(out, "\n## Diagnosis\n");
    for sentence in &verdict.diagnosis {
        let _ = writeln!(out, "- {}", escape(sentence));
    }
}

fn paths_section(out: &mut String, record: &RunRecord) {
    let _ = writeln!(out, "\n## Sending IPs and paths\n");
    let _ = writeln!(
        out,
        "| path | pool | source IP | HELO | attempts | accepted | deferred | rejected | failed | first refusal (UTC) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for path in &record.paths {
        let attempts: Vec<&AttemptRecord> =
            record.attempts.iter().filter(|attempt| attempt.path == path.name).collect();
        let count = |outcome: Outcome| attempts.iter().filter(|attempt| attempt.outcome == outcome).count();
        let first_refusal = attempts
            .iter()
            .find(|attempt| attempt.outcome != Outcome::Accepted)
            .map_or_else(|| "-".to_string(), |attempt| attempt.started_at.format(TIME_FORMAT).to_string());
        let source = path.source_ip.map_or_else(|| "system default".to_string(), |ip| ip.to_string());
        let helo = match &path.relay {
            Some(relay) => format!("{} via {relay}", path.helo),
            None => path.helo.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            path.name,
            path.pool,
            source,
            helo,
            attempts.len(),
            count(Outcome::Accepted),
            count(Outcome::Deferred),
            count(Outcome::Rejected),
            count(Outcome::Failed),
            first_refusal
        );
    }
}

/// Writes the minimum evidence per path: source IP, PTR, HELO, SPF, DKIM,
/// DMARC, TLS and the SMTP reply.
fn evidence_section(out: &mut String, record: &RunRecord) {
    let _ = writeln!(out, "\n## Evidence per path\n");
    let _ = writeln!(out, "| path | source IP | PTR | HELO | SPF | DKIM | DMARC | TLS | SMTP |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let preflight = record.preflight.as_ref();
    let status_of = |check: &str, subject: &str| -> String {
        let Some(preflight) = preflight else { return "not checked".into() };
        let found: Vec<&crate::preflight::Finding> =
            preflight.findings.iter().filter(|finding| finding.check == check && finding.subject == subject).collect();
        match summary_status(found.iter().map(|finding| finding.status)) {
            None => "-".into(),
            Some(status) => {
                let detail =
                    found.iter().find(|finding| finding.status == status).map_or("", |finding| finding.detail.as_str());
                format!("{}: {}", status.as_str(), escape(detail))
            }
        }
    };
    let dkim = match preflight {
        None => "not checked".to_string(),
        Some(preflight) => {
            let keys: Vec<&crate::preflight::Finding> =
                preflight.findings.iter().filter(|finding| finding.check == "dkim").collect();
            match summary_status(keys.iter().map(|finding| finding.status)) {
                None => "no signer".into(),
                Some(status) => format!(
                    "{} ({} selectors)",
                    status.as_str(),
                    keys.iter().map(|finding| &finding.subject).collect::<std::collections::BTreeSet<_>>().len()
                ),
            }
        }
    };
    let dmarc = match preflight {
        None => "not checked".to_string(),
        Some(preflight) => summary_status(
            preflight.findings.iter().filter(|finding| finding.check == "dmarc").map(|finding| finding.status),
        )
        .map_or_else(|| "-".to_string(), |status| status.as_str().to_string()),
    };
    for path in &record.paths {
        let subject = format!("path {}", path.name);
        let attempts: Vec<&AttemptRecord> =
            record.attempts.iter().filter(|attempt| attempt.path == path.name).collect();
        let tls = attempts
            .iter()
            .flat_map(|attempt| attempt.transactions.iter())
            .find_map(|transaction| transaction.tls.as_ref())
            .map_or_else(|| "none".to_string(), |tls| format!("{} {}", tls.version, tls.cipher));
        let smtp = attempts
            .last()
            .and_then(|attempt| attempt.reply.as_ref())
            .and_then(|reply| reply.lines.first())
            .map_or_else(|| "-".to_string(), |line| format!("`{}`", line.replace('`', "'")));
        let source = path.source_ip.map_or_else(|| "system default".to_string(), |ip| ip.to_string());
        let _ = writeln!(
            out,
            "| {} | {source} | {} | {} ({}) | {} | {dkim} | {dmarc} | {tls} | {} |",
            path.name,
            status_of("ptr", &subject),
            path.helo,
            status_of("helo", &subject),
            status_of("spf", &subject),
            escape(&smtp)
        );
    }
}

/// Sums up several findings: the worst problem if there is one, else pass
/// when any check passed, else information only.
fn summary_status(statuses: impl Iterator<Item = crate::preflight::Status>) -> Option<crate::preflight::Status> {
    use crate::preflight::Status;
    let statuses: Vec<Status> = statuses.collect();
    let worst = statuses.iter().copied().filter(|status| matches!(status, Status::Warn | Status::Fail)).max();
    worst
        .or_else(|| statuses.iter().copied().find(|status| *status == Status::Pass))
        .or_else(|| statuses.first().copied())
}

fn control_section(out: &mut String, record: &RunRecord) {
    let _ = writeln!(out, "\n## Messages\n");
    let _ = writeln!(
        out,
        "| # | stream | path | source IP | recipient | last attempt (UTC) | outcome | placement | receiver spf / dkim / dmarc | our spf / dkim / dmarc | Message-ID |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let index = RecordIndex::new(record);
    for message in &record.messages {
        let last = index.last_attempt(message);
        let source = last.and_then(|attempt| attempt.source_ip).map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let time = last.map_or_else(|| "-".to_string(), |attempt| attempt.started_at.format(TIME_FORMAT).to_string());
        let outcome = match message.outcome {
            Some(outcome) => format!("{outcome:?}").to_lowercase(),
            None => "not sent".into(),
        };
        let outcome = if message.attempts.len() > 1 {
            format!("{outcome} after {} tries", message.attempts.len())
        } else {
            outcome
        };
        let placement = match (message.placement, message.outcome) {
            (Some(placement), _) => format!("{placement:?}").to_lowercase(),
            (None, Some(Outcome::Accepted)) => "not checked".to_string(),
            (None, _) => "-".to_string(),
        };
        let verdicts = index.copy(message.sequence).and_then(|copy| copy.verdicts.as_ref());
        let three = |side: bool| -> String {
            let Some(verdicts) = verdicts else { return "-".into() };
            ["spf", "dkim", "dmarc"]
                .iter()
                .map(|method| {
                    let result = if side { verdicts.receiver_result(method) } else { verdicts.own_result(method) };
                    result.unwrap_or("none").to_string()
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            message.sequence,
            message.stream,
            message.role.as_str(),
            message.path,
            source,
            escape(&message.seed),
            time,
            outcome,
            placement,
            three(true),
            three(false),
            message.message_id.as_deref().map_or_else(|| "-".to_string(), |id| format!("`{id}`"))
        );
    }
}

/// Lists every distinct refusal verbatim, with its times and source IPs.
fn missing_section(out: &mut String, record: &RunRecord) {
    let notes: Vec<String> = record
        .messages
        .iter()
        .filter(|message| message.outcome == Some(Outcome::Accepted))
        .filter_map(|message| {
            message.missing_reason.as_ref().map(|reason| {
                format!("- message {} to {}: {}", message.sequence, escape(&message.seed), escape(reason))
            })
        })
        .collect();
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nAccepted messages without a checked copy:\n");
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
}

fn replies_section(out: &mut String, record: &RunRecord) {
    struct Seen {
        count: usize,
        first: String,
        last: String,
        ips: Vec<String>,
        stage: String,
    }
    let mut replies: BTreeMap<String, Seen> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for attempt in &record.attempts {
        if attempt.outcome == Outcome::Accepted {
            continue;
        }
        let text = match (&attempt.reply, &attempt.failure) {
            (Some(reply), _) => reply.lines.join("\n"),
            (None, Some(failure)) => format!("(no reply) {failure}"),
            (None, None) => "(no reply)".to_string(),
        };
        let time = attempt.started_at.format(TIME_FORMAT).to_string();
        let ip = attempt.source_ip.map_or_else(|| "system default".to_string(), |ip| ip.to_string());
        let stage = attempt
            .transactions
            .last()
            .and_then(|transaction| transaction.decisive.and_then(|index| transaction.exchanges.get(index)))
            .map_or_else(|| "-".to_string(), |exchange| exchange.step.to_string());
        let entry = replies.entry(text.clone()).or_insert_with(|| {
            order.push(text.clone());
            Seen { count: 0, first: time.clone(), last: time.clone(), ips: Vec::new(), stage }
        });
        entry.count += 1;
        entry.last = time;
        if !entry.ips.contains(&ip) {
            entry.ips.push(ip);
        }
    }
    let _ = writeln!(out, "\n## SMTP replies, verbatim\n");
    if order.is_empty() {
        let _ = writeln!(out, "Every attempt was accepted.");
        return;
    }
    for text in order {
        let seen = &replies[&text];
        let _ = writeln!(
            out,
            "{} times at the {} step from {}, first {}, last {}:\n",
            seen.count,
            seen.stage,
            seen.ips.join(", "),
            seen.first,
            seen.last
        );
        let _ = writeln!(out, "```\n{text}\n```\n");
    }
}

fn providers_section(out: &mut String, verdict: &Verdict) {
    let _ = writeln!(out, "\n## By provider\n");
    let _ = writeln!(out, "| provider | messages | accepted | deferred | rejected | failed | inbox | spam | missing |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for (provider, tally) in &verdict.tallies.by_provider {
        let _ = writeln!(
            out,
            "| {provider} | {} | {} | {} | {} | {} | {} | {} | {} |",
            tally.messages,
            tally.accepted,
            tally.deferred,
            tally.rejected,
            tally.failed,
            tally.inbox,
            tally.spam,
            tally.missing
        );
    }
}

fn criteria_section(out: &mut String, criteria: &[Criterion]) {
    let _ = writeln!(out, "\n## Gate criteria\n");
    for criterion in criteria {
        let mark = match (criterion.evaluated, criterion.passed) {
            (false, _) => "not evaluated",
            (true, true) => "pass",
            (true, false) => "FAIL",
        };
        let _ = writeln!(out, "- **{mark}** {}: {}", criterion.name, escape(&criterion.detail));
    }
}

/// Keeps user text from breaking a Markdown table row.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The machine-readable report: the verdict with the run's identity.
#[derive(Serialize)]
struct JsonReport<'a> {
    run_id: &'a str,
    scenario: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: chrono::DateTime<chrono::Utc>,
    checkpoint: &'static str,
    verdict: &'a Verdict,
}

pub fn json(record: &RunRecord, verdict: &Verdict) -> String {
    let report = JsonReport {
        run_id: &record.run_id,
        scenario: &record.scenario.name,
        started_at: record.started_at,
        finished_at: record.finished_at,
        checkpoint: verdict.checkpoint.as_str(),
        verdict,
    };
    serde_json::to_string_pretty(&report).expect("the report serializes") + "\n"
}

/// JUnit XML: one test case per gate criterion, so CI systems show which
/// criterion held the gate.
pub fn junit(record: &RunRecord, verdict: &Verdict) -> String {
    let failures = verdict.criteria.iter().filter(|criterion| !criterion.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"mailcanary: {}\" tests=\"{}\" failures=\"{failures}\" timestamp=\"{}\">",
        xml(&record.scenario.name),
        verdict.criteria.len(),
        record.started_at.format("%Y-%m-%dT%H:%M:%S")
    );
    for criterion in &verdict.criteria {
        let _ = write!(out, "  <testcase classname=\"gate\" name=\"{}\"", xml(&criterion.name));
        if !criterion.evaluated {
            let _ = writeln!(out, ">\n    <skipped message=\"{}\"/>\n  </testcase>", xml(&criterion.detail));
        } else if criterion.passed {
            let _ = writeln!(out, "/>");
        } else {
            let _ = writeln!(
                out,
                ">\n    <failure message=\"{}\" type=\"{}\">{}</failure>\n  </testcase>",
                xml(&criterion.detail),
                criterion.severity.as_str(),
                xml(&criterion.detail)
            );
        }
    }
    let _ = writeln!(out, "  <system-out>checkpoint: {}</system-out>", verdict.checkpoint.as_str());
    out.push_str("</testsuite>\n");
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
