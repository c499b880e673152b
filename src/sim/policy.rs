//! The simulator's policy: the `[simulator]` table as written in TOML, and the
//! validated [`SimConfig`] that the server runs.
//!
//! A policy decides per client IP. Rules are tried in file order and the
//! first rule whose `clients` contain the connecting IP applies, so write the
//! most specific rules first. A client that no rule matches gets `default`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::preset;
use super::reply::{MAX_REPLY_LINE_OCTETS, Reply};
use crate::config::{FieldError, parse_duration};

/// Hostname used in the banner and as the Authentication-Results authserv-id
/// when the policy sets none.
pub const DEFAULT_HOSTNAME: &str = "mx.sim.mailcanary.test";

/// 25 MiB, the size limit when the policy sets none.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 25 * 1024 * 1024;

/// RFC 5321 section 4.5.3.2.7 sets the server's timeout for the next
/// command to at least 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Protocol errors (500, 501, 502, 503, 555) that close a session: the
/// error that reaches this count gets 421 in place of its own reply.
pub const DEFAULT_MAX_ERRORS: u32 = 10;

/// Connections served at once; a connection over the limit gets 421 and is
/// closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// Octets of message content a `drop` rule reads before it closes the
/// connection.
pub const DEFAULT_DROP_AFTER_BYTES: u64 = 512;

/// The `[simulator]` table of a scenario or of a standalone policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorToml {
    /// Socket address to listen on, such as `127.0.0.1:2525`. Defaults to
    /// `127.0.0.1:0`, a free loopback port.
    pub listen: Option<Spanned<String>>,
    /// Allows a `listen` address outside loopback. Off by default so that the
    /// simulator never becomes reachable from the network by accident.
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Name in the greeting banner and the authserv-id of the
    /// Authentication-Results header. Defaults to `mx.sim.mailcanary.test`.
    pub hostname: Option<Spanned<String>>,
    /// Recipient domains accepted. In a scenario it defaults to the domains
    /// of the seeds; a standalone policy file must list them. RCPT TO for any
    /// other domain gets `550 5.7.1 relaying denied`.
    pub domains: Option<Vec<Spanned<String>>>,
    /// Largest message accepted, in bytes, advertised as EHLO SIZE.
    /// Defaults to 26214400 (25 MiB).
    pub max_message_size: Option<Spanned<u64>>,
    /// Delivers a message whose DMARC check fails into the Junk folder.
    /// Defaults to true.
    pub junk_on_dmarc_fail: Option<bool>,
    /// Adds an iprev result (reverse DNS of the client IP) to the
    /// Authentication-Results header. Defaults to false.
    pub iprev: Option<bool>,
    /// How long a session may wait for the client's next command or data
    /// line before it is closed with 421, such as `30s` or `5m`. Defaults
    /// to `5m`.
    pub idle_timeout: Option<Spanned<String>>,
    /// Protocol errors that close a session: the error that reaches this
    /// count gets 421 in place of its own reply. Defaults to 10.
    pub max_errors: Option<Spanned<u32>>,
    /// Connections served at once; a connection over the limit gets 421
    /// and is closed. Defaults to 100.
    pub max_connections: Option<Spanned<u32>>,
    /// Action for clients that no rule matches: `accept`, `defer`,
    /// `reject` or `drop`, with the built-in reply of that action. Defaults
    /// to `accept`. For a preset reply or a stage, write a last rule with
    /// `clients = ["0.0.0.0/0", "::/0"]` instead.
    pub default: Option<Spanned<String>>,
    /// Per-client rules, tried in order; the first rule whose `clients`
    /// contain the client IP applies.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleToml>,
}

/// One `[[simulator.rule]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleToml {
    /// Client IPs or CIDR ranges, IPv4 or IPv6, such as `203.0.113.10` or
    /// `198.51.100.0/24`.
    pub clients: Vec<Spanned<String>>,
    /// `accept`, `defer` (4xx), `reject` (5xx), `defer-after` (accept
    /// `after` messages per client IP within `window`, then defer) or `drop`
    /// (close the connection in the middle of DATA, without a reply).
    pub action: Spanned<String>,
    /// Folder of accepted messages: `inbox` (default) or `junk`. Applies to
    /// `accept` and `defer-after`.
    pub folder: Option<Spanned<String>>,
    /// A preset name (such as `proofpoint`) or a literal reply such as
    /// `"451 4.7.1 Try again later"`. Lines are separated by `\n`;
    /// `{ip}`, `{hostname}` and `{queue_id}` are filled in. `defer` and
    /// `defer-after` need a 4xx reply, `reject` a 5xx reply and `accept` a
    /// 2xx reply, which replaces the final `250 2.0.0 Ok: queued as …`.
    pub reply: Option<Spanned<String>>,
    /// Stage at which a `defer`, `reject` or `defer-after` reply is sent: `greeting`,
    /// `ehlo`, `mail`, `rcpt`, `data` or `end-of-data`. Defaults to the
    /// preset's own stage, or `rcpt` for a literal or built-in reply.
    pub stage: Option<Spanned<String>>,
    /// Messages accepted per client IP within `window` before `defer-after`
    /// defers.
    pub after: Option<Spanned<u32>>,
    /// The sliding window of `defer-after`, such as `10m` or `1h`.
    pub window: Option<Spanned<String>>,
    /// Octets of message content a `drop` rule reads before it closes the
    /// connection. Defaults to 512; a shorter message is dropped at its
    /// final dot, still without a reply.
    pub drop_after_bytes: Option<Spanned<u64>>,
}

/// A standalone policy file for `mailcanary sim --policy FILE`: the
/// `[simulator]` and `[dns]` tables of a scenario, copied verbatim.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFileToml {
    pub simulator: SimulatorToml,
    pub dns: Option<crate::dns::DnsToml>,
}

/// The SMTP stage at which a refusal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

impl Stage {
    const NAMES: [(&'static str, Stage); 6] = [
        ("greeting", Stage::Greeting),
        ("ehlo", Stage::Ehlo),
        ("mail", Stage::Mail),
        ("rcpt", Stage::Rcpt),
        ("data", Stage::Data),
        ("end-of-data", Stage::EndOfData),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, stage)| *stage == self).map_or("", |(name, _)| name)
    }

    fn parse(text: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(name, _)| *name == text).map(|(_, stage)| *stage)
    }
}

/// The Maildir folder of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Folder {
    Inbox,
    Junk,
}

/// The treatment of a client's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Accepts every message into `folder`; `reply` replaces the final 250.
    Accept { folder: Folder, reply: Option<Reply> },
    /// Sends a 4xx reply at `stage`.
    Defer { stage: Stage, reply: Reply },
    /// Sends a 5xx reply at `stage`.
    Reject { stage: Stage, reply: Reply },
    /// Accepts `after` messages per client IP within `window`, then sends
    /// `reply` at `stage` until older messages leave the window.
    DeferAfter { after: u32, window: Duration, stage: Stage, reply: Reply, folder: Folder },
    /// Closes the connection without a reply once `after_bytes` octets of
    /// message content have arrived, or at the final dot of a shorter message.
    Drop { after_bytes: u64 },
}

/// A validated rule: the client ranges it matches and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub clients: Vec<IpNet>,
    pub action: Action,
}

/// The validated simulator policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Set by `allow_non_loopback`; [`start`](super::start) refuses a
    /// non-loopback `listen` address without it.
    pub allow_non_loopback: bool,
    pub hostname: String,
    /// Accepted recipient domains, lowercase, without a trailing dot.
    pub domains: Vec<String>,
    pub max_message_size: u64,
    pub junk_on_dmarc_fail: bool,
    pub check_iprev: bool,
    pub idle_timeout: Duration,
    pub max_errors: u32,
    pub max_connections: usize,
    pub default_action: Action,
    pub rules: Vec<Rule>,
}

impl SimConfig {
    /// Builds a policy that accepts mail for `domains` from every client, on
    /// a free loopback port, with every other setting at its default.
    pub fn accept_all(domains: Vec<String>) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            allow_non_loopback: false,
            hostname: DEFAULT_HOSTNAME.to_string(),
            domains: domains.iter().map(|domain| normalize_domain(domain)).collect(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            junk_on_dmarc_fail: true,
            check_iprev: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_errors: DEFAULT_MAX_ERRORS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            default_action: Action::Accept { folder: Folder::Inbox, reply: None },
            rules: Vec::new(),
        }
    }

    /// Returns the action for a client IP and the index of the rule that
    /// chose it (`None` for the default action).
    pub fn action_for(&self, client: IpAddr) -> (Option<usize>, &Action) {
        let client = client.to_canonical();
        self.rules
            .iter()
            .position(|rule| rule.clients.iter().any(|net| net.contains(&client)))
            .map_or((None, &self.default_action), |index| (Some(index), &self.rules[index].action))
    }

    /// True when mail for `domain` is accepted (compared case-insensitively).
    pub fn accepts_domain(&self, domain: &str) -> bool {
        let domain = normalize_domain(domain);
        self.domains.contains(&domain)
    }
}

/// Validates the `[simulator]` table found under the dotted `key`.
/// `default_domains` are used when the table has no `domains` key (a
/// scenario passes its seed domains, a standalone policy file none).
/// Returns every error found, not only the first.
pub fn validate(raw: &SimulatorToml, key: &str, default_domains: &[String]) -> Result<SimConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut config = SimConfig::accept_all(default_domains.to_vec());
    config.allow_non_loopback = raw.allow_non_loopback;

    if let Some(listen) = &raw.listen
        && let Some(address) = validate_listen(listen, raw.allow_non_loopback, key, &mut errors)
    {
        config.listen = address;
    }

    if let Some(hostname) = &raw.hostname {
        let text = hostname.get_ref().trim().trim_end_matches('.');
        if is_domain_name(text) {
            config.hostname = text.to_ascii_lowercase();
        } else {
            errors.push(FieldError::at(
                hostname,
                format!("{key}.hostname"),
                format!("invalid hostname {text:?}; write a DNS name such as mx.sim.mailcanary.test"),
            ));
        }
    }

    match &raw.domains {
        Some(domains) => {
            config.domains.clear();
            for (index, domain) in domains.iter().enumerate() {
                let text = domain.get_ref().trim();
                if is_domain_name(text.trim_end_matches('.')) {
                    config.domains.push(normalize_domain(text));
                } else {
                    errors.push(FieldError::at(
                        domain,
                        format!("{key}.domains[{index}]"),
                        format!("invalid domain {text:?}; write a domain name such as customer-a.example.net"),
                    ));
                }
            }
        }
        None if config.domains.is_empty() => errors.push(FieldError::new(
            None,
            format!("{key}.domains"),
            "no recipient domains; list the domains the simulator accepts mail for, \
             such as domains = [\"customer-a.example.net\"]",
        )),
        None => {}
    }
    if raw.domains.as_ref().is_some_and(Vec::is_empty) {
        errors.push(FieldError::new(
            None,
            format!("{key}.domains"),
            "the list is empty, so every recipient would be refused; \
             list at least one domain such as \"customer-a.example.net\"",
        ));
    }

    if let Some(size) = &raw.max_message_size {
        if *size.get_ref() == 0 {
            errors.push(FieldError::at(
                size,
                format!("{key}.max_message_size"),
                "must be at least 1 byte; write a size in bytes such as 26214400 (25 MiB)",
            ));
        } else {
            config.max_message_size = *size.get_ref();
        }
    }

    config.junk_on_dmarc_fail = raw.junk_on_dmarc_fail.unwrap_or(true);
    config.check_iprev = raw.iprev.unwrap_or(false);

    if let Some(timeout) = &raw.idle_timeout {
        match parse_duration(timeout.get_ref()) {
            Ok(duration) if duration.is_zero() => errors.push(FieldError::at(
                timeout,
                format!("{key}.idle_timeout"),
                "must be longer than zero; write a duration such as 30s or 5m",
            )),
            Ok(duration) => config.idle_timeout = duration,
            Err(message) => errors.push(FieldError::at(timeout, format!("{key}.idle_timeout"), message)),
        }
    }

    if let Some(max_errors) = &raw.max_errors {
        if *max_errors.get_ref() == 0 {
            errors.push(FieldError::at(
                max_errors,
                format!("{key}.max_errors"),
                "must be at least 1; write the number of protocol errors allowed per session, such as 10",
            ));
        } else {
            config.max_errors = *max_errors.get_ref();
        }
    }

    if let Some(max_connections) = &raw.max_connections {
        if *max_connections.get_ref() == 0 {
            errors.push(FieldError::at(
                max_connections,
                format!("{key}.max_connections"),
                "must be at least 1; write the number of connections served at once, such as 100",
            ));
        } else {
            config.max_connections = *max_connections.get_ref() as usize;
        }
    }

    if let Some(default) = &raw.default {
        match default_action(default.get_ref()) {
            Some(action) => config.default_action = action,
            None => errors.push(FieldError::at(
                default,
                format!("{key}.default"),
                format!(
                    "invalid default action {:?}; write \"accept\", \"defer\", \"reject\" or \"drop\" \
                     (for defer-after, a preset or a stage, add a last rule with clients = [\"0.0.0.0/0\", \"::/0\"])",
                    default.get_ref()
                ),
            )),
        }
    }

    for (index, rule) in raw.rules.iter().enumerate() {
        let rule_key = format!("{key}.rule[{index}]");
        if let Some(rule) = validate_rule(rule, &rule_key, &config.hostname, &mut errors) {
            config.rules.push(rule);
        }
    }

    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

fn validate_listen(
    listen: &Spanned<String>,
    allow_non_loopback: bool,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<SocketAddr> {
    let text = listen.get_ref().trim();
    let Ok(address) = text.parse::<SocketAddr>() else {
        errors.push(FieldError::at(
            listen,
            format!("{key}.listen"),
            format!(
                "invalid socket address {text:?}; write an IP address and a port, such as 127.0.0.1:2525 or [::1]:2525"
            ),
        ));
        return None;
    };
    if !address.ip().is_loopback() && !allow_non_loopback {
        errors.push(FieldError::at(
            listen,
            format!("{key}.listen"),
            format!(
                "{address} is not a loopback address, so the simulator would be reachable from the network; \
                 listen on 127.0.0.1 or ::1, or set allow_non_loopback = true if that is intended"
            ),
        ));
        return None;
    }
    Some(address)
}

fn default_action(name: &str) -> Option<Action> {
    match name {
        "accept" => Some(Action::Accept { folder: Folder::Inbox, reply: None }),
        "defer" => Some(Action::Defer { stage: Stage::Rcpt, reply: builtin_reply("defer", Stage::Rcpt) }),
        "reject" => Some(Action::Reject { stage: Stage::Rcpt, reply: builtin_reply("reject", Stage::Rcpt) }),
        "drop" => Some(Action::Drop { after_bytes: DEFAULT_DROP_AFTER_BYTES }),
        _ => None,
    }
}

/// Builds the reply of a `defer`, `reject` or `defer-after` rule without a
/// `reply` key.
fn builtin_reply(action: &str, stage: Stage) -> Reply {
    match (action, stage) {
        // RFC 5321 section 3.1 names 554 as the refusal in a greeting.
        ("reject", Stage::Greeting) => Reply::new(554, "5.7.1 {hostname} Connection refused for [{ip}]"),
        ("reject", _) => Reply::new(550, "5.7.1 Message refused by policy for [{ip}]"),
        ("defer-after", _) => Reply::new(451, "4.7.1 Too many messages from [{ip}], try again later"),
        _ => Reply::new(451, "4.7.1 Service temporarily unavailable for [{ip}], try again later"),
    }
}

const ACTIONS: &str = "\"accept\", \"defer\", \"reject\", \"defer-after\" or \"drop\"";

/// Validates one rule, pushing its errors; returns the rule when it has none.
fn validate_rule(raw: &RuleToml, key: &str, hostname: &str, errors: &mut Vec<FieldError>) -> Option<Rule> {
    let errors_before = errors.len();

    let clients = validate_clients(raw, key, errors);

    let action_name = raw.action.get_ref().trim();
    let allowed: &[&str] = match action_name {
        "accept" => &["folder", "reply"],
        "defer" | "reject" => &["reply", "stage"],
        "defer-after" => &["reply", "stage", "folder", "after", "window"],
        "drop" => &["drop_after_bytes"],
        other => {
            errors.push(FieldError::at(
                &raw.action,
                format!("{key}.action"),
                format!("unknown action {other:?}; write {ACTIONS}"),
            ));
            return None;
        }
    };
    reject_keys_outside(raw, action_name, allowed, key, errors);

    let folder = validate_folder(raw, key, errors);
    let reply = validate_reply(raw, action_name, key, hostname, errors);
    let stage = validate_stage(raw, key, errors);

    let action = match action_name {
        "accept" => Action::Accept { folder, reply: reply.map(|(reply, _)| reply) },
        "drop" => {
            let after_bytes = raw.drop_after_bytes.as_ref().map_or(DEFAULT_DROP_AFTER_BYTES, |bytes| *bytes.get_ref());
            if after_bytes == 0
                && let Some(bytes) = &raw.drop_after_bytes
            {
                errors.push(FieldError::at(
                    bytes,
                    format!("{key}.drop_after_bytes"),
                    "must be at least 1; write the octets of message content to read before closing, such as 512",
                ));
            }
            Action::Drop { after_bytes }
        }
        _ => {
            let preset_stage = reply.as_ref().and_then(|(_, stage)| *stage);
            let stage = stage.or(preset_stage).unwrap_or(Stage::Rcpt);
            let reply = reply.map_or_else(|| builtin_reply(action_name, stage), |(reply, _)| reply);
            match action_name {
                "defer" => Action::Defer { stage, reply },
                "reject" => Action::Reject { stage, reply },
                _ => {
                    let (after, window) = validate_volume_trigger(raw, key, errors)?;
                    Action::DeferAfter { after, window, stage, reply, folder }
                }
            }
        }
    };

    (errors.len() == errors_before).then_some(Rule { clients, action })
}

fn validate_clients(raw: &RuleToml, key: &str, errors: &mut Vec<FieldError>) -> Vec<IpNet> {
    if raw.clients.is_empty() {
        errors.push(FieldError::at(
            &raw.action,
            format!("{key}.clients"),
            "the list is empty, so the rule matches no client; list IPs or CIDR ranges such as \
             \"203.0.113.10\" or \"198.51.100.0/24\" (\"0.0.0.0/0\" and \"::/0\" match everyone)",
        ));
    }

    let mut clients = Vec::new();
    for (index, client) in raw.clients.iter().enumerate() {
        let text = client.get_ref().trim();
        let parsed = text.parse::<IpNet>().map(|net| net.trunc()).or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => clients.push(net),
            Err(_) => errors.push(FieldError::at(
                client,
                format!("{key}.clients[{index}]"),
                format!("invalid IP address or CIDR range {text:?}; write an address such as 203.0.113.10 or 2001:db8::10, or a range such as 198.51.100.0/24"),
            )),
        }
    }
    clients
}

/// Reports the keys that the action does not use, so that a `folder` on a
/// `reject` rule, say, does not pass silently.
fn reject_keys_outside(raw: &RuleToml, action: &str, allowed: &[&str], key: &str, errors: &mut Vec<FieldError>) {
    let present: [(&str, Option<std::ops::Range<usize>>); 6] = [
        ("folder", raw.folder.as_ref().map(Spanned::span)),
        ("reply", raw.reply.as_ref().map(Spanned::span)),
        ("stage", raw.stage.as_ref().map(Spanned::span)),
        ("after", raw.after.as_ref().map(Spanned::span)),
        ("window", raw.window.as_ref().map(Spanned::span)),
        ("drop_after_bytes", raw.drop_after_bytes.as_ref().map(Spanned::span)),
    ];
    for (name, span) in present {
        if let Some(span) = span
            && !allowed.contains(&name)
        {
            errors.push(FieldError::new(
                Some(span),
                format!("{key}.{name}"),
                format!(
                    "{name} does not apply to action {action:?}; remove it (action {action:?} takes {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

fn validate_folder(raw: &RuleToml, key: &str, errors: &mut Vec<FieldError>) -> Folder {
    let Some(folder) = &raw.folder else { return Folder::Inbox };
    match folder.get_ref().trim() {
        "inbox" => Folder::Inbox,
        "junk" => Folder::Junk,
        other => {
            errors.push(FieldError::at(
                folder,
                format!("{key}.folder"),
                format!("unknown folder {other:?}; write \"inbox\" or \"junk\""),
            ));
            Folder::Inbox
        }
    }
}

fn validate_stage(raw: &RuleToml, key: &str, errors: &mut Vec<FieldError>) -> Option<Stage> {
    let stage = raw.stage.as_ref()?;
    let parsed = Stage::parse(stage.get_ref().trim());
    if parsed.is_none() {
        errors.push(FieldError::at(
            stage,
            format!("{key}.stage"),
            format!(
                "unknown stage {:?}; write \"greeting\", \"ehlo\", \"mail\", \"rcpt\", \"data\" or \"end-of-data\"",
                stage.get_ref()
            ),
        ));
    }
    parsed
}

/// Resolves the `reply` key into a reply and, for a preset, the preset's
/// stage. Checks that the reply's code class fits the action and that its
/// lines stay within RFC 5321's limit once filled in.
fn validate_reply(
    raw: &RuleToml,
    action: &str,
    key: &str,
    hostname: &str,
    errors: &mut Vec<FieldError>,
) -> Option<(Reply, Option<Stage>)> {
    let spanned = raw.reply.as_ref()?;
    let text = spanned.get_ref();
    let key = format!("{key}.reply");
    let starts_with_digit = text.trim_start().starts_with(|c: char| c.is_ascii_digit());

    let (reply, stage, origin) = if starts_with_digit {
        match Reply::parse(text.trim()) {
            Ok(reply) => (reply, None, format!("{:?}", first_line(text))),
            Err(message) => {
                errors.push(FieldError::at(spanned, key, format!("invalid reply: {message}")));
                return None;
            }
        }
    } else {
        let name = text.trim();
        let Some(preset) = preset::find(name) else {
            errors.push(FieldError::at(
                spanned,
                key,
                format!(
                    "unknown reply preset {name:?}; known presets: {}; or write a literal reply \
                     that starts with its code, such as \"451 4.7.1 Try again later\"",
                    preset::names()
                ),
            ));
            return None;
        };
        let reply = Reply::parse(preset.text).expect("every preset is a valid reply");
        (reply, Some(preset.stage), format!("preset {name:?}"))
    };

    let (fits, needed, hint) = match action {
        "accept" => {
            (reply.is_positive() && reply.code() < 300, "a 2xx", "such as \"250 2.0.0 Ok: queued as {queue_id}\"")
        }
        "reject" => (reply.is_permanent(), "a 5xx", "or use action = \"defer\" for a 4xx reply"),
        _ => (reply.is_transient(), "a 4xx", "or use action = \"reject\" for a 5xx reply"),
    };
    if !fits {
        errors.push(FieldError::at(
            spanned,
            key,
            format!("action {action:?} needs {needed} reply, but {origin} has code {}; {hint}", reply.code()),
        ));
        return None;
    }

    let longest = reply.longest_line_octets(hostname);
    if longest > MAX_REPLY_LINE_OCTETS {
        errors.push(FieldError::at(
            spanned,
            key,
            format!(
                "a line of {origin} can reach {longest} octets once {{ip}}, {{hostname}} and {{queue_id}} are filled in, \
                 over the {MAX_REPLY_LINE_OCTETS} octets RFC 5321 allows; split it into more lines with \\n"
            ),
        ));
        return None;
    }
    Some((reply, stage))
}

fn validate_volume_trigger(raw: &RuleToml, key: &str, errors: &mut Vec<FieldError>) -> Option<(u32, Duration)> {
    let after = match &raw.after {
        None => {
            errors.push(FieldError::at(
                &raw.action,
                format!("{key}.after"),
                "missing: defer-after needs the number of messages to accept first, such as after = 2",
            ));
            None
        }
        Some(after) if *after.get_ref() == 0 => {
            errors.push(FieldError::at(
                after,
                format!("{key}.after"),
                "must be at least 1; to defer every message, use action = \"defer\"",
            ));
            None
        }
        Some(after) => Some(*after.get_ref()),
    };

    let window = match &raw.window {
        None => {
            errors.push(FieldError::at(
                &raw.action,
                format!("{key}.window"),
                "missing: defer-after needs the window that messages are counted in, such as window = \"1h\"",
            ));
            None
        }
        Some(window) => match parse_duration(window.get_ref()) {
            Ok(duration) if duration.is_zero() => {
                errors.push(FieldError::at(
                    window,
                    format!("{key}.window"),
                    "must be longer than zero; write a duration such as 10m or 1h",
                ));
                None
            }
            Ok(duration) => Some(duration),
            Err(message) => {
                errors.push(FieldError::at(window, format!("{key}.window"), message));
                None
            }
        },
    };

    Some((after?, window?))
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or_default()
}

/// Lowercases a domain and drops a trailing dot.
pub(crate) fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the letter-digit-hyphen syntax of a DNS name (RFC 1123 section 2.1).
fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SimulatorToml {
        toml::from_str(text).unwrap()
    }

    fn validate_ok(text: &str) -> SimConfig {
        validate(&parse(text), "simulator", &["customer-a.example.net".into()]).unwrap()
    }

    fn validate_err(text: &str) -> Vec<FieldError> {
        validate(&parse(text), "simulator", &["customer-a.example.net".into()]).unwrap_err()
    }

    #[test]
    fn empty_table_takes_defaults() {
        let config = validate_ok("");
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.hostname, DEFAULT_HOSTNAME);
        assert_eq!(config.domains, ["customer-a.example.net"]);
        assert_eq!(config.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
        assert!(config.junk_on_dmarc_fail);
        assert_eq!(config.default_action, Action::Accept { folder: Folder::Inbox, reply: None });
    }

    #[test]
    fn preset_brings_its_stage() {
        let config = validate_ok(
            r#"
            [[rule]]
            clients = ["203.0.113.0/24"]
            action = "defer"
            reply = "proofpoint"
            "#,
        );
        let Action::Defer { stage, reply } = &config.rules[0].action else { panic!("not a deferral") };
        assert_eq!(*stage, Stage::Greeting);
        assert_eq!(reply.code(), 421);
    }

    #[test]
    fn stage_key_overrides_preset_stage() {
        let config = validate_ok(
            r#"
            [[rule]]
            clients = ["203.0.113.10"]
            action = "defer"
            reply = "proofpoint"
            stage = "rcpt"
            "#,
        );
        assert!(matches!(config.rules[0].action, Action::Defer { stage: Stage::Rcpt, .. }));
    }

    #[test]
    fn first_matching_rule_wins() {
        let config = validate_ok(
            r#"
            [[rule]]
            clients = ["203.0.113.10"]
            action = "reject"

            [[rule]]
            clients = ["203.0.113.0/24", "2001:db8::/32"]
            action = "defer"
            "#,
        );
        let (index, action) = config.action_for("203.0.113.10".parse().unwrap());
        assert_eq!(index, Some(0));
        assert!(matches!(action, Action::Reject { .. }));
        assert_eq!(config.action_for("203.0.113.11".parse().unwrap()).0, Some(1));
        assert_eq!(config.action_for("2001:db8::1".parse().unwrap()).0, Some(1));
        assert_eq!(config.action_for("::ffff:203.0.113.12".parse().unwrap()).0, Some(1));
        assert_eq!(config.action_for("198.51.100.1".parse().unwrap()).0, None);
    }

    #[test]
    fn every_preset_parses() {
        for preset in preset::PRESETS {
            let reply = Reply::parse(preset.text);
            assert!(reply.is_ok(), "preset {}: {:?}", preset.name, reply.err());
            let longest = reply.unwrap().longest_line_octets(DEFAULT_HOSTNAME);
            assert!(longest <= MAX_REPLY_LINE_OCTETS, "preset {}: {longest} octets", preset.name);
        }
    }

    #[test]
    fn accepts_domain_ignores_case() {
        let config = validate_ok(r#"domains = ["Customer-A.Example.NET."]"#);
        assert!(config.accepts_domain("customer-a.example.net"));
        assert!(!config.accepts_domain("example.net"));
    }

    #[test]
    fn errors_are_all_reported() {
        let errors = validate_err(
            r#"
            listen = "0.0.0.0:25"
            [[rule]]
            clients = ["203.0.113.300"]
            action = "defer"
            reply = "proofpont"
            "#,
        );
        let keys: Vec<_> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["simulator.listen", "simulator.rule[0].clients[0]", "simulator.rule[0].reply"]);
        assert!(errors.iter().all(|error| error.span.is_some()));
    }
}
