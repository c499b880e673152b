//! The output of `mailcanary explain`: plain sentences for people, and the
//! classification as JSON for scripts.

use std::fmt::Write as _;

use crate::smtp::record::Outcome;

use super::{Classification, Provider, Reason, UnwrappedReply};

/// Writes what a reply means and what to do next, in plain sentences, with
/// the IP it names and its lookup URL.
pub fn explain_text(classification: &Classification, unwrapped: &UnwrappedReply) -> String {
    let mut text = String::new();

    let _ = writeln!(text, "{}", headline(classification));
    let _ = writeln!(text, "{}", reason_sentence(classification.reason, classification.provider));
    if let Some(ip) = classification.ip {
        let _ = writeln!(text, "The reply names the IP {ip}.");
    }
    if let Some(url) = &classification.lookup_url {
        let _ = writeln!(text, "Lookup: {url}");
    }
    if let Some(origin) = origin_sentence(unwrapped) {
        let _ = writeln!(text, "{origin}");
    }

    if !classification.advice.is_empty() {
        let _ = writeln!(text, "\nNext steps:");
        for step in &classification.advice {
            let _ = writeln!(text, "  - {step}");
        }
    }

    let _ = writeln!(text, "\nReply: {}", unwrapped.reply.lines.join(" | "));
    let _ = writeln!(text, "Matched rule: {}", classification.rule);
    text
}

/// Writes the classification as pretty-printed JSON with the fields
/// `outcome`, `code`, `enhanced`, `provider`, `reason`, `ip`, `lookup_url`,
/// `rule` and `advice`; a missing value is `null`.
pub fn explain_json(classification: &Classification) -> String {
    serde_json::to_string_pretty(classification).expect("a classification always serializes")
}

fn headline(classification: &Classification) -> String {
    let verdict = match classification.outcome {
        Some(Outcome::Accepted) => "Accepted",
        Some(Outcome::Deferred) => "Deferred (temporary: the sender retries)",
        Some(Outcome::Rejected) => "Rejected (permanent: retrying the same message fails again)",
        Some(Outcome::Failed) => "Failed",
        None => "No outcome can be read from this reply",
    };
    let codes = match (classification.code, classification.enhanced.as_deref()) {
        (Some(code), Some(enhanced)) => format!(" with {code} {enhanced}"),
        (Some(code), None) => format!(" with {code}"),
        (None, Some(enhanced)) => format!(" with enhanced code {enhanced}"),
        (None, None) => String::new(),
    };
    let author = match classification.provider {
        Provider::Other => "a receiver this tool does not recognize".to_owned(),
        provider => provider.display_name().to_owned(),
    };
    format!("{verdict}{codes}, written by {author}.")
}

fn reason_sentence(reason: Reason, provider: Provider) -> String {
    let author = provider.display_name();
    let meaning = match reason {
        Reason::IpReputation => {
            format!("{author} distrusts the sending IP or its range, by its own reputation data")
        }
        Reason::Blocklist => "a third-party blocklist named in the reply lists the sending IP or domain".to_owned(),
        Reason::RateLimit => format!("{author} limits how fast it accepts mail from this sender"),
        Reason::Authentication => "SPF, DKIM or DMARC did not pass, or the From domain is not aligned".to_owned(),
        Reason::Content => "the message content drew the verdict".to_owned(),
        Reason::Policy => {
            format!("a policy of {author} or of the recipient's organization refused the mail")
        }
        Reason::Recipient => "the problem is the recipient's, not the sender's".to_owned(),
        Reason::Greylist => "greylisting: the receiver wants to see a retry first".to_owned(),
        Reason::Tls => "TLS toward this receiver failed or is required".to_owned(),
        Reason::Dns => "the sender's DNS is incomplete, mostly a missing or mismatched PTR record".to_owned(),
        Reason::Capacity => "a fault or lack of resources at the receiver; nothing about the sender".to_owned(),
        Reason::Protocol => "a problem in the SMTP session itself, not a verdict on the sender".to_owned(),
        Reason::Unknown => "the reply names no cause that the rules recognize".to_owned(),
    };
    format!("Reason: {reason}, meaning {meaning}.")
}

fn origin_sentence(unwrapped: &UnwrappedReply) -> Option<String> {
    let host = match (&unwrapped.mx_host, unwrapped.relay_ip) {
        (Some(host), Some(ip)) => Some(format!("{host} [{ip}]")),
        (Some(host), None) => Some(host.clone()),
        (None, Some(ip)) => Some(format!("[{ip}]")),
        (None, None) => None,
    };
    match (host, unwrapped.stage) {
        (Some(host), Some(stage)) => Some(format!("Sent by {host} in answer to the {stage} step.")),
        (Some(host), None) => Some(format!("Sent by {host}.")),
        (None, Some(stage)) => Some(format!("Sent in answer to the {stage} step.")),
        (None, None) => None,
    }
}
