//! Reading an SMTP reply as a postmaster does: which provider wrote it,
//! why it deferred or rejected (the reply reason), which IP it names, and
//! where that IP can be looked up.
//!
//! The rules are data: `rules.toml` is compiled into the binary and a
//! user's rules file is tried before it. Enhanced status codes are read as
//! RFC 3463 defines them, and as providers extend them (`4.7.650`).

mod extract;
mod log;
mod render;
mod rules;
mod unwrap;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::smtp::ReplyClass;
use crate::smtp::record::{Outcome, Reply, Step};

pub use log::{LogFormat, LogLine, parse_log_line};
pub use render::{explain_json, explain_text};
pub use rules::{Rules, load_user_rules};
pub use unwrap::{UnwrappedReply, unwrap_reply};

/// The operator of the receiving system that wrote a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Proofpoint,
    Microsoft,
    Google,
    Yahoo,
    Mimecast,
    Cisco,
    Barracuda,
    Apple,
    Other,
}

/// The cause of a deferral or rejection, in the field's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The receiver distrusts the sending IP or range, by its own measure.
    IpReputation,
    /// A third-party list (Spamhaus, Cloudmark, Barracuda's) is named.
    Blocklist,
    RateLimit,
    /// SPF, DKIM, DMARC or alignment.
    Authentication,
    Content,
    /// The receiver's own policy, or a verdict no other reason names.
    Policy,
    /// The problem is the recipient's (unknown, full, over its own rate).
    Recipient,
    Greylist,
    Tls,
    /// The sender's DNS, mostly a missing or mismatched PTR record.
    Dns,
    /// A fault or lack of resources at the receiver.
    Capacity,
    /// The SMTP session itself: syntax, sequence, timeouts.
    Protocol,
    Unknown,
}

impl Provider {
    /// Returns the provider's serde name, `proofpoint` for example.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Proofpoint => "proofpoint",
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
            Provider::Yahoo => "yahoo",
            Provider::Mimecast => "mimecast",
            Provider::Cisco => "cisco",
            Provider::Barracuda => "barracuda",
            Provider::Apple => "apple",
            Provider::Other => "other",
        }
    }

    /// Returns the name as people write it, `Proofpoint` for example.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Proofpoint => "Proofpoint",
            Provider::Microsoft => "Microsoft",
            Provider::Google => "Google",
            Provider::Yahoo => "Yahoo",
            Provider::Mimecast => "Mimecast",
            Provider::Cisco => "Cisco",
            Provider::Barracuda => "Barracuda",
            Provider::Apple => "Apple",
            Provider::Other => "the receiver",
        }
    }
}

impl Reason {
    /// Returns the reason's serde name, `ip-reputation` for example.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::IpReputation => "ip-reputation",
            Reason::Blocklist => "blocklist",
            Reason::RateLimit => "rate-limit",
            Reason::Authentication => "authentication",
            Reason::Content => "content",
            Reason::Policy => "policy",
            Reason::Recipient => "recipient",
            Reason::Greylist => "greylist",
            Reason::Tls => "tls",
            Reason::Dns => "dns",
            Reason::Capacity => "capacity",
            Reason::Protocol => "protocol",
            Reason::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The context of a reply: where it came from and which step it followed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyContext {
    /// The MX host the reply came from.
    pub mx_host: Option<String>,
    /// The protocol step the reply belongs to.
    pub stage: Option<Step>,
    /// The source IP the path was bound to; when the reply names another
    /// address, the advice starts with that mismatch.
    pub source_ip: Option<IpAddr>,
}

/// One reply read as a postmaster reads it. This is also the JSON form of
/// `mailcanary explain --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// From the reply code, else the enhanced code's class, else the wording
    /// (Mimecast's `#550` help anchor, "rejected", "try again later").
    /// `None` for a 3xx reply or text that gives no outcome at all.
    pub outcome: Option<Outcome>,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub provider: Provider,
    pub reason: Reason,
    /// The address the reply names, usually the client IP the receiver saw.
    pub ip: Option<IpAddr>,
    /// The first URL in the reply, trailing punctuation removed.
    pub lookup_url: Option<String>,
    /// The id of the reason rule that matched, or `none`.
    pub rule: String,
    pub advice: Vec<String>,
}

/// The rule id reported when no reason rule matched.
const NO_RULE: &str = "none";

/// Classifies a reply with the built-in rules.
pub fn classify(reply: &Reply, context: &ReplyContext) -> Classification {
    Rules::builtin().classify(reply, context)
}

/// Reads a reply as pasted, logged or bounced, and classifies it.
///
/// `input` may be a bare reply, a wrapped one or an MTA log line. `mx` is
/// the MX host the user names, which wins over the one a wrapper names.
pub fn explain(input: &str, mx: Option<&str>, rules: &Rules) -> (UnwrappedReply, Classification) {
    let unwrapped = unwrap_reply(input);
    let context = ReplyContext {
        mx_host: mx.map(str::to_owned).or_else(|| unwrapped.mx_host.clone()),
        stage: unwrapped.stage,
        source_ip: None,
    };
    let classification = rules.classify(&unwrapped.reply, &context);
    (unwrapped, classification)
}

/// Explains a difference between the IP a reply names and the IP the path
/// was bound to, or returns `None` when they agree or the reply names none.
pub fn ip_mismatch(classification: &Classification, bound_ip: IpAddr) -> Option<String> {
    let named = canonical(classification.ip?);
    let bound = canonical(bound_ip);
    if named == bound {
        return None;
    }
    Some(format!(
        "The reply names {named}, but this path is bound to {bound}, so the gateway saw another address than the one bound \
         (NAT, a wrong egress route, or a relay in between). No reputation work on {bound} helps until that is fixed."
    ))
}

/// Reads an IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl Rules {
    /// Classifies a reply with these rules.
    pub fn classify(&self, reply: &Reply, context: &ReplyContext) -> Classification {
        let text = extract::reply_text(reply);
        let ip = extract::named_ip(&text);
        let lookup_url = extract::first_url(&text);

        let mut subject = rules::Subject {
            text: &text,
            lowercase_text: text.to_lowercase(),
            raw_lines: &reply.lines,
            code: reply.code,
            enhanced: reply.enhanced.as_deref(),
            stage: context.stage,
            provider: None,
            outcome: None,
        };

        let (provider, provider_rule) =
            self.detect_provider(&subject, context.mx_host.as_deref()).unwrap_or((Provider::Other, NO_RULE));
        subject.provider = Some(provider);

        // A reply with a code or an enhanced code has its outcome from it,
        // a 3xx reply has none, and only text without either is read for it.
        let outcome = match reply.class() {
            Some(ReplyClass::PositiveIntermediate) => None,
            Some(_) => reply.outcome(),
            None => self.outcome_from_wording(&subject).map(|(outcome, _)| outcome),
        };
        subject.outcome = outcome;

        let matched = self.match_reason(&subject);
        let reason = matched.map_or(Reason::Unknown, |rule| rule.reason);
        let rule = matched.map_or(NO_RULE, |rule| rule.id.as_str()).to_owned();
        tracing::debug!(%provider, provider_rule, %reason, rule, "classified reply");

        let mut classification = Classification {
            outcome,
            code: reply.code,
            enhanced: reply.enhanced.clone(),
            provider,
            reason,
            ip,
            lookup_url,
            rule,
            advice: Vec::new(),
        };
        classification.advice = self.advice(&classification, matched.map(|rule| rule.advice.as_slice()), context);
        classification
    }

    /// Collects the advice: an IP mismatch first, then the matched rule's
    /// own steps, then the reason's steps.
    fn advice(
        &self,
        classification: &Classification,
        rule_steps: Option<&[String]>,
        context: &ReplyContext,
    ) -> Vec<String> {
        let mut advice = Vec::new();
        if let Some(bound) = context.source_ip
            && let Some(mismatch) = ip_mismatch(classification, bound)
        {
            advice.push(mismatch);
        }

        let mut steps: Vec<&String> = rule_steps.unwrap_or_default().iter().collect();
        if let Some(reason_advice) = self.advice_for(classification.reason) {
            steps.extend(&reason_advice.steps);
            let by_url = match classification.lookup_url {
                Some(_) => &reason_advice.with_url,
                None => &reason_advice.without_url,
            };
            steps.extend(by_url);
        }
        advice.extend(steps.into_iter().filter_map(|step| fill_placeholders(step, classification)));
        advice
    }
}

/// Fills `{ip}`, `{lookup_url}` and `{provider}`, or returns `None` when a
/// named value is missing.
fn fill_placeholders(step: &str, classification: &Classification) -> Option<String> {
    let mut filled = step.replace("{provider}", classification.provider.display_name());
    if filled.contains("{ip}") {
        filled = filled.replace("{ip}", &classification.ip?.to_string());
    }
    if filled.contains("{lookup_url}") {
        filled = filled.replace("{lookup_url}", classification.lookup_url.as_deref()?);
    }
    Some(filled)
}
