//! Proofpoint's X-Proofpoint-* header fields and the Received fields of a
//! Proofpoint hop (hosts under `pphosted.com` and `ppops.net`).
//!
//! Spam-Details and Virus-Version are blank-separated `key=value` lists.
//! Scores are 32-bit signed integers, and Proofpoint writes `i32::MIN`
//! (-2147483648) for a score it did not compute.

use serde::{Deserialize, Serialize};

use super::received::{Received, parse_received};

/// The value of a Spam-Details field: a number where it parses as a signed
/// 32-bit integer, else the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Number(i32),
    Text(String),
}

impl FieldValue {
    fn parse(text: &str) -> FieldValue {
        match text.parse() {
            Ok(number) => FieldValue::Number(number),
            Err(_) => FieldValue::Text(text.to_string()),
        }
    }
}

/// The score Proofpoint writes when it did not compute one.
pub const NOT_COMPUTED: i32 = i32::MIN;

/// X-Proofpoint-Spam-Details: the rule and policy that decided and the
/// scores behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpamDetails {
    /// The rule that matched (`notspam`, `outbound_notspam`, `spam`, ...).
    pub rule: Option<String>,
    /// The policy applied (`default`, `outbound`, ...).
    pub policy: Option<String>,
    /// The overall score, when it is a number.
    pub score: Option<i32>,
    /// Every other pair, in order (`spamscore`, `bulkscore`, `engine`, ...),
    /// and `score` when it is not a number.
    pub fields: Vec<(String, FieldValue)>,
}

impl SpamDetails {
    /// Returns the value of the first field named `key`.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    /// Returns the names of the scores that hold [`NOT_COMPUTED`].
    pub fn not_computed(&self) -> Vec<&str> {
        let score = (self.score == Some(NOT_COMPUTED)).then_some("score");
        let fields = self
            .fields
            .iter()
            .filter(|(_, value)| *value == FieldValue::Number(NOT_COMPUTED))
            .map(|(name, _)| name.as_str());
        score.into_iter().chain(fields).collect()
    }
}

/// Parses an X-Proofpoint-Spam-Details value. Words without `=`, such as the
/// `…` of a cut copy, are skipped.
pub fn parse_spam_details(value: &str) -> SpamDetails {
    let mut details = SpamDetails::default();
    for (key, text) in pairs(value) {
        match key.as_str() {
            "rule" if details.rule.is_none() => details.rule = Some(text),
            "policy" if details.policy.is_none() => details.policy = Some(text),
            "score" if details.score.is_none() => match text.parse() {
                Ok(score) => details.score = Some(score),
                Err(_) => details.fields.push((key, FieldValue::Text(text))),
            },
            _ => details.fields.push((key, FieldValue::parse(&text))),
        }
    }
    details
}

/// X-Proofpoint-Virus-Version: the anti-virus vendor and its versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirusVersion {
    pub vendor: Option<String>,
    /// The engine version as written: `2.50.10432:,,` in the older form, a
    /// comma-separated list of `name:version` in the newer one.
    pub engine: Option<String>,
    /// The definition versions as written.
    pub definitions: Option<String>,
    pub signatures: Option<String>,
    /// Other pairs, in order.
    pub other: Vec<(String, String)>,
}

/// Parses an X-Proofpoint-Virus-Version value.
pub fn parse_virus_version(value: &str) -> VirusVersion {
    let mut version = VirusVersion::default();
    for (key, text) in pairs(value) {
        match key.as_str() {
            "vendor" => version.vendor = Some(text),
            "engine" => version.engine = Some(text),
            "definitions" => version.definitions = Some(text),
            "signatures" => version.signatures = Some(text),
            _ => version.other.push((key, text)),
        }
    }
    version
}

/// Splits a blank-separated `key=value` list, unfolded, with keys lowercased.
/// A word without `=` after a value that ends in `,` continues that value,
/// because older Virus-Version fields write `engine=2.50.10434:6.0.235,
/// 18.0.687`. Any other word without `=` is skipped.
fn pairs(value: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for word in super::unfold(value).split_whitespace() {
        if let Some((key, text)) = word.split_once('=') {
            pairs.push((key.to_ascii_lowercase(), text.to_string()));
        } else if let Some((_, last)) = pairs.last_mut()
            && last.ends_with(',')
        {
            last.push(' ');
            last.push_str(word);
        }
    }
    pairs
}

/// Parses X-Proofpoint-UnRewURL (`0 URL was un-rewritten`): the number of
/// URLs the gateway restored to their original form.
pub fn parse_unrewritten_urls(value: &str) -> Option<u32> {
    super::unfold(value).split_whitespace().next()?.parse().ok()
}

/// The role of a Received field in a Proofpoint gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofpointHopKind {
    /// A Proofpoint host received the message from outside.
    Inbound,
    /// The filtering stage handed the message back (`from pps.filterd`).
    Filter,
    /// The message was reinjected after filtering (`from pps.reinject`).
    Reinject,
    /// A host outside Proofpoint received the message from a Proofpoint
    /// host.
    Outbound,
}

impl ProofpointHopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofpointHopKind::Inbound => "inbound",
            ProofpointHopKind::Filter => "filter",
            ProofpointHopKind::Reinject => "reinject",
            ProofpointHopKind::Outbound => "outbound",
        }
    }
}

/// A Received field that belongs to a Proofpoint hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofpointHop {
    pub kind: ProofpointHopKind,
    /// Position of the Received field in the headers given to
    /// [`parse_proofpoint_headers`].
    pub index: usize,
    pub received: Received,
}

/// Returns the role of a Received field in a Proofpoint hop, or `None` when
/// neither its `by` nor its `from` side is a Proofpoint host.
pub fn proofpoint_hop_kind(received: &Received) -> Option<ProofpointHopKind> {
    let from = received.from.as_deref().unwrap_or("").to_ascii_lowercase();
    let by_proofpoint = received.by.as_deref().is_some_and(is_proofpoint_host);

    if by_proofpoint && from == "pps.filterd" {
        return Some(ProofpointHopKind::Filter);
    }
    if by_proofpoint && from == "pps.reinject" {
        return Some(ProofpointHopKind::Reinject);
    }
    if by_proofpoint {
        return Some(ProofpointHopKind::Inbound);
    }
    let from_proofpoint = is_proofpoint_host(&from) || received.client_host.as_deref().is_some_and(is_proofpoint_host);
    from_proofpoint.then_some(ProofpointHopKind::Outbound)
}

/// True for a host under `pphosted.com` or `ppops.net`.
pub fn is_proofpoint_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    ["pphosted.com", "ppops.net"].iter().any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
}

/// Every Proofpoint field of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofpointHeaders {
    pub spam_details: Option<SpamDetails>,
    pub virus_version: Option<VirusVersion>,
    /// X-Proofpoint-Spam-Reason (`safe`, `orgsafe`, `mlx`, ...).
    pub spam_reason: Option<String>,
    /// X-Proofpoint-SPF-Result, lowercased.
    pub spf_result: Option<String>,
    /// X-Proofpoint-SPF-Record, unfolded.
    pub spf_record: Option<String>,
    pub guid: Option<String>,
    pub orig_guid: Option<String>,
    /// X-Proofpoint-UnRewURL: the number of URLs restored.
    pub unrewritten_urls: Option<u32>,
    /// The Received fields of Proofpoint hops, top first.
    pub hops: Vec<ProofpointHop>,
    /// Other X-Proofpoint-* fields, unfolded and trimmed, in order.
    pub other: Vec<(String, String)>,
}

/// Collects the Proofpoint fields from `headers` (name, raw value, top
/// first).
///
/// Where a field appears more than once the top-most instance is kept,
/// because it is the last one written. A message that passed the sender's
/// Proofpoint (outbound policy) and then the receiver's carries both sets:
/// pass only the fields above the gateway's entry hop to read the receiver's.
pub fn parse_proofpoint_headers(headers: &[(String, String)]) -> ProofpointHeaders {
    let mut found = ProofpointHeaders::default();

    for (index, (name, value)) in headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let text = || super::unfold(value).trim().to_string();

        if lower == "received" {
            let received = parse_received(value);
            if let Some(kind) = proofpoint_hop_kind(&received) {
                found.hops.push(ProofpointHop { kind, index, received });
            }
            continue;
        }
        let Some(suffix) = lower.strip_prefix("x-proofpoint-") else {
            continue;
        };
        match suffix {
            "spam-details" => set_once(&mut found.spam_details, || parse_spam_details(value)),
            "virus-version" => set_once(&mut found.virus_version, || parse_virus_version(value)),
            "spam-reason" => set_once(&mut found.spam_reason, text),
            "spf-result" => set_once(&mut found.spf_result, || text().to_ascii_lowercase()),
            "spf-record" => set_once(&mut found.spf_record, text),
            "guid" => set_once(&mut found.guid, text),
            "orig-guid" => set_once(&mut found.orig_guid, text),
            "unrewurl" => {
                if found.unrewritten_urls.is_none() {
                    found.unrewritten_urls = parse_unrewritten_urls(value);
                }
            }
            _ => found.other.push((name.clone(), text())),
        }
    }

    found
}

fn set_once<T>(slot: &mut Option<T>, value: impl FnOnce() -> T) {
    if slot.is_none() {
        *slot = Some(value());
    }
}
