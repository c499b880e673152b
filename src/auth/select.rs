//! Choosing the Authentication-Results field that the receiving gateway
//! added.
//!
//! Header fields are prepended as a message travels, so everything above the
//! gateway's own Received field was written by the gateway or by hosts after
//! it, and everything below was already in the message when the sender's
//! connection ended. A sender can put `Authentication-Results: mx.gateway;
//! dkim=pass` into its own message, so a field below that Received line is
//! never used, whatever authserv-id it names.
//!
//! The rule, step by step:
//!
//! 1. The boundary is the gateway's entry hop, found as [`gateway_hop`]
//!    describes from the `by` hosts of the Received fields. When the
//!    configuration names no gateway host, or names only authserv-ids that
//!    match no `by` host, the boundary is the top-most Received field, which
//!    the final receiving host always adds. When gateway hosts are
//!    configured and none of them appears, the message did not pass the
//!    gateway and nothing is returned. Without any Received field nothing is
//!    returned either.
//! 2. The candidates are the Authentication-Results fields above the
//!    boundary, top first, that parse.
//! 3. With trusted authserv-ids configured, the top-most candidate naming one
//!    of them is chosen. Without them, the top-most candidate is chosen and
//!    its authserv-id is the inferred one.
//! 4. Hosts that write one field per method (one each for dkim, spf, dmarc)
//!    are covered by [`receiver_results_all`], which also returns the other
//!    candidates with the chosen authserv-id.
//! 5. When no Authentication-Results field qualifies, the
//!    ARC-Authentication-Results field above the boundary with the highest
//!    instance is used under the same rules. The gateway seals the results it
//!    computed, and Gmail needs this step because it writes its
//!    Authentication-Results below its own Received field but its ARC set
//!    above it.
//!
//! [`gateway_hop`]: super::received::gateway_hop

use serde::{Deserialize, Serialize};

use super::received::{self, Received};
use super::results::{AuthenticationResults, parse_authentication_results};

/// The identifiers of the receiving gateway of one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedIds {
    /// Authserv-ids that the gateway writes (`mx1.customer-a.example.net`,
    /// `ppops.net`), compared without regard to case.
    pub authserv_ids: Vec<String>,
    /// Host names or domains of the gateway as they appear in the `by`
    /// clause of its Received fields (`pphosted.com` matches
    /// `mx0a-001b2d01.pphosted.com`).
    pub gateway_hosts: Vec<String>,
}

impl TrustedIds {
    /// True when `host` equals, or is a subdomain of, a gateway host or an
    /// authserv-id. Authserv-ids count because many receivers use their
    /// host name as one.
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.gateway_hosts.iter().chain(&self.authserv_ids).any(|entry| {
            let entry = entry.trim_end_matches('.').to_ascii_lowercase();
            !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
        })
    }

    /// True when `authserv_id` is one of the trusted authserv-ids.
    pub fn matches_authserv_id(&self, authserv_id: &str) -> bool {
        self.authserv_ids.iter().any(|trusted| trusted.eq_ignore_ascii_case(authserv_id))
    }
}

/// Returns the Authentication-Results field that the receiving gateway added,
/// with its index in `headers`, following the rule in the module
/// documentation.
///
/// `headers` contains (name, raw value) pairs in message order, top first, as
/// [`parse_message_headers`](super::parse_message_headers) returns them.
pub fn receiver_results(headers: &[(String, String)], trusted: &TrustedIds) -> Option<(usize, AuthenticationResults)> {
    receiver_results_all(headers, trusted).into_iter().next()
}

/// Returns every trustworthy field of the chosen authserv-id, top first: the
/// field [`receiver_results`] returns and, for receivers that write one field
/// per method, the others above the boundary with the same authserv-id.
pub fn receiver_results_all(headers: &[(String, String)], trusted: &TrustedIds) -> Vec<(usize, AuthenticationResults)> {
    let Some(boundary) = boundary_index(headers, trusted) else {
        return Vec::new();
    };

    let above = &headers[..boundary];
    let chosen = choose(candidates(above, "Authentication-Results"), trusted, false);
    if !chosen.is_empty() {
        return chosen;
    }
    choose(candidates(above, "ARC-Authentication-Results"), trusted, true)
}

/// Returns the index in `headers` of the gateway's entry Received field, or
/// of the top-most Received field when the gateway is not identified.
fn boundary_index(headers: &[(String, String)], trusted: &TrustedIds) -> Option<usize> {
    let mut positions = Vec::new();
    let mut fields: Vec<Received> = Vec::new();
    for (index, (name, value)) in headers.iter().enumerate() {
        if name.eq_ignore_ascii_case("Received") {
            positions.push(index);
            fields.push(received::parse_received(value));
        }
    }

    if let Some(entry) = received::gateway_entry_index(&fields, trusted) {
        return Some(positions[entry]);
    }
    // NOTE: an authserv-id that names no `by` host (Proofpoint writes
    // `ppops.net` on hosts under `pphosted.com`) falls back to the top-most
    // Received field, so a gateway behind a later hop such as Exchange Online
    // is found only when its host is in `gateway_hosts`.
    if !trusted.gateway_hosts.is_empty() {
        tracing::debug!(hosts = ?trusted.gateway_hosts, "no Received field names the gateway");
        return None;
    }
    positions.first().copied()
}

fn candidates(above: &[(String, String)], name: &str) -> Vec<(usize, AuthenticationResults)> {
    above
        .iter()
        .enumerate()
        .filter(|(_, (field, _))| field.eq_ignore_ascii_case(name))
        .filter_map(|(index, (_, value))| match parse_authentication_results(value) {
            Ok(parsed) => Some((index, parsed)),
            Err(error) => {
                tracing::debug!(index, %error, "skipping unreadable {name} field");
                None
            }
        })
        .collect()
}

/// Picks the trusted field among `candidates` and the other fields of its
/// authserv-id. For ARC fields only the highest instance is returned.
fn choose(
    candidates: Vec<(usize, AuthenticationResults)>,
    trusted: &TrustedIds,
    arc: bool,
) -> Vec<(usize, AuthenticationResults)> {
    let mut eligible: Vec<(usize, AuthenticationResults)> = if trusted.authserv_ids.is_empty() {
        candidates
    } else {
        candidates
            .into_iter()
            .filter(|(_, parsed)| parsed.authserv_id.as_deref().is_some_and(|id| trusted.matches_authserv_id(id)))
            .collect()
    };

    if arc {
        let highest = eligible.iter().max_by_key(|(index, parsed)| (parsed.instance, std::cmp::Reverse(*index)));
        return highest.cloned().into_iter().collect();
    }

    if eligible.is_empty() {
        return eligible;
    }
    let first = eligible.remove(0);
    let Some(authserv_id) = first.1.authserv_id.clone() else {
        return vec![first];
    };
    let mut chosen = vec![first];
    chosen.extend(
        eligible.into_iter().filter(|(_, parsed)| {
            parsed.authserv_id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(&authserv_id))
        }),
    );
    chosen
}
