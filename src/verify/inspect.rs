//! `mailcanary inspect`: the parse and checks of a run, on one saved copy,
//! for users who read a seed mailbox by hand.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CopyVerdicts, Envelope, verify_copy};
use crate::auth::proofpoint::{ProofpointHeaders, parse_proofpoint_headers};
use crate::auth::received::{Received, parse_received};
use crate::auth::results::{AuthenticationResults, parse_authentication_results};
use crate::auth::select::TrustedIds;

/// One authentication header of the copy, parsed, with its position.
#[derive(Debug, Serialize)]
pub struct ParsedHeader {
    pub index: usize,
    pub name: String,
    pub raw: String,
    pub parsed: Option<AuthenticationResults>,
    pub error: Option<String>,
}

/// Everything `inspect` reports about one message.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub tracking_token: Option<String>,
    pub authentication_headers: Vec<ParsedHeader>,
    pub received: Vec<Received>,
    pub proofpoint: ProofpointHeaders,
    /// The receiver's chosen header and our own checks; absent with `--no-dns`.
    pub verdicts: Option<CopyVerdicts>,
}

const AUTH_HEADERS: [&str; 4] =
    ["Authentication-Results", "ARC-Authentication-Results", "Authentication-Results-Original", "Received-SPF"];

/// Parses a saved message and, when an authenticator is given, verifies it.
pub async fn inspect(
    message: &[u8],
    authenticator: Option<&mail_auth::MessageAuthenticator>,
    envelope: &Envelope<'_>,
    trusted: &TrustedIds,
) -> Inspection {
    let headers = crate::auth::parse_message_headers(message);
    let first = |name: &str| {
        headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| crate::auth::unfold(value).trim().to_string())
    };

    let authentication_headers = headers
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| AUTH_HEADERS.iter().any(|known| known.eq_ignore_ascii_case(name)))
        .map(|(index, (name, value))| {
            let parsed = if name.eq_ignore_ascii_case("Received-SPF") {
                crate::auth::received_spf::parse_received_spf(value).map(|result| AuthenticationResults {
                    authserv_id: None,
                    version: None,
                    instance: None,
                    results: vec![result],
                    none: false,
                    ignored: Vec::new(),
                })
            } else {
                parse_authentication_results(value)
            };
            let (parsed, error) = match parsed {
                Ok(parsed) => (Some(parsed), None),
                Err(error) => (None, Some(error.to_string())),
            };
            ParsedHeader {
                index,
                name: name.clone(),
                raw: crate::auth::unfold(value).trim().to_string(),
                parsed,
                error,
            }
        })
        .collect();

    let received = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Received"))
        .map(|(_, value)| parse_received(value))
        .collect();

    let tracking_token = first(crate::message::TOKEN_HEADER);
    let verdicts = match authenticator {
        Some(authenticator) => Some(verify_copy(authenticator, message, envelope, trusted).await),
        None => None,
    };
    Inspection {
        from: first("From"),
        subject: first("Subject"),
        message_id: first("Message-ID"),
        tracking_token,
        authentication_headers,
        received,
        proofpoint: parse_proofpoint_headers(&headers),
        verdicts,
    }
}

/// Renders an inspection for the terminal.
pub fn render(inspection: &Inspection) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("From", &inspection.from),
        ("Subject", &inspection.subject),
        ("Message-ID", &inspection.message_id),
        ("tracking token", &inspection.tracking_token),
    ] {
        let _ = writeln!(out, "{label}: {}", value.as_deref().unwrap_or("-"));
    }

    let _ = writeln!(out, "\nauthentication headers, top first:");
    if inspection.authentication_headers.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for header in &inspection.authentication_headers {
        match &header.parsed {
            Some(parsed) => {
                let _ = writeln!(
                    out,
                    "  [{}] {} by {}{}",
                    header.index,
                    header.name,
                    parsed.authserv_id.as_deref().unwrap_or("(no authserv-id)"),
                    parsed.instance.map(|instance| format!(" i={instance}")).unwrap_or_default()
                );
                for result in &parsed.results {
                    let props: Vec<String> =
                        result.props.iter().map(|property| format!("{}={}", property.key(), property.value)).collect();
                    let _ = writeln!(
                        out,
                        "      {}={}{}{}{}",
                        result.method,
                        result.result,
                        result
                            .normalized
                            .as_ref()
                            .map(|normalized| format!(" (means {normalized})"))
                            .unwrap_or_default(),
                        if props.is_empty() { String::new() } else { format!(" {}", props.join(" ")) },
                        result.comment.as_ref().map(|comment| format!(" ({comment})")).unwrap_or_default()
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  [{}] {}: not parsed: {}",
                    header.index,
                    header.name,
                    header.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }

    let proofpoint = &inspection.proofpoint;
    if let Some(details) = &proofpoint.spam_details {
        let _ = writeln!(
            out,
            "\nProofpoint: rule={} policy={} score={}",
            details.rule.as_deref().unwrap_or("-"),
            details.policy.as_deref().unwrap_or("-"),
            details.score.map_or_else(|| "-".to_string(), |score| score.to_string())
        );
    }

    if let Some(verdicts) = &inspection.verdicts {
        let _ = writeln!(out, "\nverdicts      receiver   our check");
        for method in ["spf", "dkim", "dmarc"] {
            let _ = writeln!(
                out,
                "  {method:<11} {:<10} {}",
                verdicts.receiver_result(method).unwrap_or("-"),
                verdicts.own_result(method).unwrap_or("-")
            );
        }
        if let Some(hop) = &verdicts.gateway_hop {
            let _ = writeln!(
                out,
                "gateway hop: {} saw {} (TLS {}){}",
                hop.by,
                hop.client_ip.map_or_else(|| "an unknown client".to_string(), |ip| ip.to_string()),
                if hop.tls { "yes" } else { "no" },
                hop.delay_after_date_seconds
                    .map(|delay| format!(", {delay} s after the Date header"))
                    .unwrap_or_default()
            );
        }
        for sentence in &verdicts.disagreements {
            let _ = writeln!(out, "  - {sentence}");
        }
    }
    out
}
