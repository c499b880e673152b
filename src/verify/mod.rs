//! Verification of a delivered copy: what the receiving gateway computed
//! (its Authentication-Results, chosen so a sender cannot forge it), what we
//! compute ourselves with mail-auth on the same copy, and why the two
//! disagree when they do.

pub mod inspect;

use std::net::IpAddr;

use mail_auth::common::verify::VerifySignature;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator};
use serde::{Deserialize, Serialize};

use crate::auth::received::Hop;
use crate::auth::results::AuthenticationResults;
use crate::auth::select::TrustedIds;

/// One method's result, reduced to the keyword the field compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodVerdict {
    pub method: String,
    /// The result keyword (`pass`, `fail`, `softfail`, …); a receiver's
    /// non-standard keyword is replaced by its standard meaning.
    pub result: String,
    /// The signing domain and selector for DKIM, the checked domain for SPF
    /// and DMARC.
    pub domain: Option<String>,
    pub selector: Option<String>,
    /// The checker's explanation, where it gives one: a comment, a reason,
    /// an error.
    pub detail: Option<String>,
}

/// The receiving gateway's verdicts, as written into the copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverVerdicts {
    /// The top trusted header's position among the copy's header fields,
    /// top first.
    pub header_index: usize,
    pub header: AuthenticationResults,
    /// Positions of further trusted headers with the same authserv-id,
    /// whose methods are merged into `methods`.
    #[serde(default)]
    pub other_headers: Vec<usize>,
    pub methods: Vec<MethodVerdict>,
}

/// Verdicts that mailcanary computed on the copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnVerdicts {
    /// One entry per DKIM-Signature found.
    pub dkim: Vec<MethodVerdict>,
    pub spf: MethodVerdict,
    pub dmarc: MethodVerdict,
    /// The ARC chain's validation, when the copy carries ARC sets.
    pub arc: Option<MethodVerdict>,
}

/// The receiver's and our own verdicts on one copy, and the explanations
/// where they differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyVerdicts {
    pub receiver: Option<ReceiverVerdicts>,
    pub own: Option<OwnVerdicts>,
    /// The hop at which the gateway received the message.
    pub gateway_hop: Option<Hop>,
    /// The X-Proofpoint-* headers, when a Proofpoint gateway added them.
    pub proofpoint: Option<crate::auth::proofpoint::ProofpointHeaders>,
    pub disagreements: Vec<String>,
}

impl CopyVerdicts {
    /// Returns the receiver's summary result for `method`: `pass` when any
    /// DKIM signature passed, else the first result written.
    pub fn receiver_result(&self, method: &str) -> Option<&str> {
        let methods = &self.receiver.as_ref()?.methods;
        summary(methods.iter().filter(|verdict| verdict.method == method))
    }

    /// Our own summary result for `method`.
    pub fn own_result(&self, method: &str) -> Option<&str> {
        let own = self.own.as_ref()?;
        match method {
            "dkim" => summary(own.dkim.iter()),
            "spf" => Some(own.spf.result.as_str()),
            "dmarc" => Some(own.dmarc.result.as_str()),
            _ => None,
        }
    }
}

fn summary<'a>(mut verdicts: impl Iterator<Item = &'a MethodVerdict> + Clone) -> Option<&'a str> {
    if verdicts.clone().any(|verdict| verdict.result == "pass") {
        return Some("pass");
    }
    verdicts.next().map(|verdict| verdict.result.as_str())
}

/// The envelope the message was sent with, for our own SPF check.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The address the gateway saw; the path's source IP when known.
    pub client_ip: Option<IpAddr>,
    pub helo: &'a str,
    pub mail_from: &'a str,
}

/// Verifies one copy.
pub async fn verify_copy(
    authenticator: &MessageAuthenticator,
    copy: &[u8],
    envelope: &Envelope<'_>,
    trusted: &TrustedIds,
) -> CopyVerdicts {
    let headers = crate::auth::parse_message_headers(copy);
    // Some receivers write one header per method (OpenDKIM, OpenDMARC and
    // policyd-spf each add their own), so every trusted header counts.
    let trusted_headers = crate::auth::select::receiver_results_all(&headers, trusted);
    let receiver = trusted_headers.first().map(|(header_index, header)| ReceiverVerdicts {
        header_index: *header_index,
        header: header.clone(),
        other_headers: trusted_headers[1..].iter().map(|(index, _)| *index).collect(),
        methods: trusted_headers.iter().flat_map(|(_, header)| header.results.iter().map(receiver_method)).collect(),
    });

    let received: Vec<_> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Received"))
        .map(|(_, value)| crate::auth::received::parse_received(value))
        .collect();
    let date = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Date"))
        .and_then(|(_, value)| crate::auth::received::parse_date(value));
    let gateway_hop = crate::auth::received::gateway_hop(&received, trusted, date);

    // SPF must be evaluated for the address the gateway saw. That is the
    // path's source IP unless NAT or a relay stood between, and the gateway's
    // Received line shows it.
    let client_ip = envelope.client_ip.or_else(|| gateway_hop.as_ref().and_then(|hop| hop.client_ip));
    let own = own_checks(authenticator, copy, client_ip, envelope).await;

    let proofpoint = crate::auth::proofpoint::parse_proofpoint_headers(&headers);
    let proofpoint = (proofpoint != Default::default()).then_some(proofpoint);

    let mut verdicts = CopyVerdicts { receiver, own, gateway_hop, proofpoint, disagreements: Vec::new() };
    verdicts.disagreements = explain_disagreements(&verdicts, envelope.client_ip);
    verdicts
}

fn receiver_method(result: &crate::auth::results::MethodResult) -> MethodVerdict {
    let method = result.method.split('/').next().unwrap_or(&result.method).to_string();
    let property =
        |key: &str| result.props.iter().find(|property| property.key() == key).map(|property| property.value.clone());
    let (domain, selector) = match method.as_str() {
        "dkim" => (property("header.d").or_else(|| property("header.i")), property("header.s")),
        "spf" => (property("smtp.mailfrom").or_else(|| property("smtp.helo")), None),
        "dmarc" => (property("header.from"), None),
        _ => (None, None),
    };
    MethodVerdict {
        method,
        result: result.normalized.clone().unwrap_or_else(|| result.result.clone()),
        domain,
        selector,
        detail: result.reason.clone().or_else(|| result.comment.clone()),
    }
}

async fn own_checks(
    authenticator: &MessageAuthenticator,
    copy: &[u8],
    client_ip: Option<IpAddr>,
    envelope: &Envelope<'_>,
) -> Option<OwnVerdicts> {
    let parsed = AuthenticatedMessage::parse(copy)?;
    let dkim_outputs = authenticator.verify_dkim(&parsed).await;
    let dkim = dkim_outputs
        .iter()
        .map(|output| {
            let signature = output.signature();
            let (result, detail) = crate::auth::keywords::dkim(output.result());
            MethodVerdict {
                method: "dkim".into(),
                result: result.into(),
                domain: signature.map(|signature| signature.domain().to_string()),
                selector: signature.map(|signature| signature.selector().to_string()),
                detail,
            }
        })
        .collect();

    let mail_from_domain = envelope.mail_from.rsplit_once('@').map_or(envelope.helo, |(_, domain)| domain).to_string();
    let (spf, spf_output) = match client_ip {
        Some(ip) => {
            let output = authenticator
                .verify_spf(SpfParameters::verify_mail_from(
                    ip,
                    envelope.helo,
                    "mailcanary.invalid",
                    envelope.mail_from,
                ))
                .await;
            let verdict = MethodVerdict {
                method: "spf".into(),
                result: crate::auth::keywords::spf(output.result()).into(),
                domain: Some(mail_from_domain.clone()),
                selector: None,
                detail: Some(format!("evaluated for {ip}")),
            };
            (verdict, Some(output))
        }
        None => (
            MethodVerdict {
                method: "spf".into(),
                result: "none".into(),
                domain: Some(mail_from_domain.clone()),
                selector: None,
                detail: Some("no client IP is known for this copy, so SPF was not evaluated".into()),
            },
            None,
        ),
    };

    let dmarc = match &spf_output {
        Some(spf_output) => {
            let output = authenticator
                .verify_dmarc(DmarcParameters::new(&parsed, &dkim_outputs, &mail_from_domain, spf_output))
                .await;
            let result = crate::auth::keywords::dmarc(&output.result());
            MethodVerdict {
                method: "dmarc".into(),
                result: result.into(),
                domain: Some(output.domain().to_string()),
                selector: None,
                detail: Some(format!(
                    "spf alignment {}, dkim alignment {}",
                    crate::auth::keywords::dmarc(output.spf_result()),
                    crate::auth::keywords::dmarc(output.dkim_result())
                )),
            }
        }
        None => MethodVerdict {
            method: "dmarc".into(),
            result: "none".into(),
            domain: None,
            selector: None,
            detail: Some("not evaluated without an SPF result".into()),
        },
    };
    let arc = if !parsed.as_headers.is_empty() || !parsed.ams_headers.is_empty() {
        let output = authenticator.verify_arc(&parsed).await;
        let (result, detail) = crate::auth::keywords::dkim(output.result());
        Some(MethodVerdict { method: "arc".into(), result: result.into(), domain: None, selector: None, detail })
    } else {
        None
    };
    Some(OwnVerdicts { dkim, spf, dmarc, arc })
}

/// Explains, in the field's words, each method on which the receiver and
/// our own check disagree.
fn explain_disagreements(verdicts: &CopyVerdicts, source_ip: Option<IpAddr>) -> Vec<String> {
    let mut explanations = Vec::new();
    if verdicts.receiver.is_none() {
        explanations.push(
            "no Authentication-Results header from the receiving gateway was found above its Received line, so its verdicts are unknown; set authserv_id for this mailbox if the gateway writes another name".to_string(),
        );
    }
    let (Some(_), Some(own)) = (&verdicts.receiver, &verdicts.own) else { return explanations };

    for method in ["spf", "dkim", "dmarc"] {
        let (Some(theirs), Some(ours)) = (verdicts.receiver_result(method), verdicts.own_result(method)) else {
            continue;
        };
        if theirs == ours || (theirs != "pass" && ours != "pass") {
            continue;
        }
        let sentence = match (method, theirs == "pass") {
            ("dkim", false) => {
                let body_hash =
                    own.dkim.iter().chain(verdicts.receiver.iter().flat_map(|receiver| receiver.methods.iter())).any(
                        |verdict| {
                            verdict
                                .detail
                                .as_deref()
                                .is_some_and(|detail| detail.to_ascii_lowercase().contains("body hash"))
                        },
                    );
                if body_hash {
                    "dkim=fail at the receiver and a body hash mismatch: the message was altered in transit (a footer, a rewritten link or a re-encoding)".to_string()
                } else {
                    format!(
                        "dkim={theirs} at the receiver but dkim=pass on our check of the delivered copy: the receiver saw other DNS (a rotated or unpublished key, a stale cache) or a different copy"
                    )
                }
            }
            ("spf", false) => {
                let seen = verdicts.gateway_hop.as_ref().and_then(|hop| hop.client_ip);
                match (seen, source_ip) {
                    (Some(seen), Some(bound)) if seen != bound => format!(
                        "spf={theirs} at the receiver, which saw the connection from {seen}, not the path's source IP {bound}: NAT or a relay stands between, so authorise that address or fix the egress"
                    ),
                    _ => format!(
                        "spf={theirs} at the receiver but pass on our check: the receiver sees other SPF records (check for a stale record or a second SPF record)"
                    ),
                }
            }
            ("dmarc", false) => format!(
                "dmarc={theirs} at the receiver but pass on our check: the receiver found no aligned pass (see its spf and dkim results)"
            ),
            ("dkim", true)
                if own.dkim.iter().any(|verdict| {
                    verdict.detail.as_deref().is_some_and(|detail| detail.to_ascii_lowercase().contains("body hash"))
                }) =>
            {
                format!(
                    "dkim=pass at the receiver but {ours} on our check with a body hash mismatch: this copy was changed after delivery (edited, re-encoded or re-saved by a mail client or tool)"
                )
            }
            (_, _) => format!(
                "{method}=pass at the receiver but {ours} on our check: the records changed since delivery, or our resolver sees other answers"
            ),
        };
        explanations.push(sentence);
    }
    explanations
}
