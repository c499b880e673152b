//! Reading one MTA log line: Postfix status and `said` lines, Exim main
//! and debug output, KumoMTA's JSON log records, ZoneMTA, Haraka and
//! OpenSMTPD. Lines often reach us cut (`…`) or without their syslog
//! prefix; a field that was cut is left empty rather than guessed.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::smtp::record::{Reply, Step};

use super::unwrap::{peel, step_from_command};

/// The MTA and the form of its log a line was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Postfix,
    Exim,
    EximDebug,
    KumomtaJson,
    ZoneMta,
    Haraka,
    Opensmtpd,
}

/// The fields of one MTA log line. Every field is optional because each MTA
/// logs a different subset, and cut lines lose more.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub format: LogFormat,
    /// The syslog program name, such as `postfix/smtp`.
    pub program: Option<String>,
    pub pid: Option<u32>,
    /// The MTA's message or queue id.
    pub queue_id: Option<String>,
    /// The log level (ZoneMTA's `ERR!`, `info`).
    pub level: Option<String>,
    /// The SMTP session id.
    pub session: Option<String>,
    /// The event the line records when it is not a delivery status
    /// (`lost connection`, `SMTPCLOSE`, `TransientFailure`).
    pub event: Option<String>,
    /// The delivery status in the MTA's words (`deferred`, `sent`,
    /// `bounced`, `rejected`, `received`).
    pub status: Option<String>,
    /// The category an MTA gives a rejection (ZoneMTA's `REJECTED[policy]`).
    pub category: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub relay_host: Option<String>,
    pub relay_ip: Option<IpAddr>,
    pub relay_port: Option<u16>,
    /// The local address the MTA sent from, or the client of a reception.
    pub source_ip: Option<IpAddr>,
    /// Total delay as logged, with its unit where the MTA writes one.
    pub delay: Option<String>,
    /// Postfix's `delays=a/b/c/d`: before the queue manager, in it, setting
    /// up the connection, and transmitting, in seconds.
    pub delays: Option<String>,
    /// The MTA's own status code for the recipient (RFC 3463 form).
    pub dsn: Option<String>,
    pub stage: Option<Step>,
    pub code: Option<u16>,
    /// The enhanced status code inside the remote reply.
    pub enhanced: Option<String>,
    /// The remote reply as logged, without the MTA's wrapper.
    pub reply: Option<String>,
    /// The MTA's own text where no remote reply came.
    pub detail: Option<String>,
    /// How long the connection lasted (ZoneMTA's `connected=`).
    pub connected: Option<String>,
    /// Seconds until the next retry.
    pub retry_s: Option<u64>,
    /// KumoMTA's own bounce classification.
    pub bounce_classification: Option<String>,
    /// True when the MTA made the reply up itself (KumoMTA's `KumoMTA
    /// internal:` replies). Such replies carry nothing about the receiver.
    pub internal: bool,
}

impl LogLine {
    fn new(format: LogFormat) -> LogLine {
        LogLine {
            format,
            program: None,
            pid: None,
            queue_id: None,
            level: None,
            session: None,
            event: None,
            status: None,
            category: None,
            sender: None,
            recipient: None,
            relay_host: None,
            relay_ip: None,
            relay_port: None,
            source_ip: None,
            delay: None,
            delays: None,
            dsn: None,
            stage: None,
            code: None,
            enhanced: None,
            reply: None,
            detail: None,
            connected: None,
            retry_s: None,
            bounce_classification: None,
            internal: false,
        }
    }

    /// Sets the reply and reads its codes.
    fn set_reply(&mut self, reply: &str) {
        let reply = reply.trim();
        if reply.is_empty() {
            return;
        }
        let parsed = Reply::parse_text(reply);
        self.code = parsed.code.or(self.code);
        self.enhanced = parsed.enhanced;
        self.reply = Some(reply.to_owned());
    }
}

/// The mark of a cut in log samples; a value containing it is not kept.
const CUT: char = '…';

/// Parses one log line, or the few lines of one record that debug output
/// prints. Returns `None` when the text has none of the known forms.
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let text = line.trim();
    if text.starts_with('{') {
        return parse_kumomta(text);
    }
    if text.starts_with("LOG:") || text.starts_with("SMTP<<") || text.starts_with("SMTP>>") {
        return parse_exim_debug(text);
    }
    if ZONE_MTA_LEVEL.is_match(text) {
        return parse_zone_mta(text);
    }
    if text.contains("[outbound]") || text.contains("Temp failing ") {
        return parse_haraka(text);
    }
    if OPENSMTPD_RELAY.is_match(text) || text.contains("smtp-out: ") {
        return parse_opensmtpd(text);
    }
    if text.contains("status=") || POSTFIX_PREFIX.is_match(text) {
        return parse_postfix(text);
    }
    if text.contains("SMTP error from remote mail") {
        return parse_exim(text, LogFormat::Exim);
    }
    None
}

// --- Postfix -----------------------------------------------------------

static POSTFIX_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)([\w./-]+)\[(\d+)\]:\s+([0-9A-Za-z]+):\s+(?:to=|host |lost connection|conversation with |connect to )").unwrap()
});
static POSTFIX_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s,])(to|orig_to|relay|delay|delays|dsn|status)=([^,\s]+)").unwrap());
static RELAY_VALUE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^([^\[]+)\[([^\]]+)\](?::(\d+))?$").unwrap());
static POSTFIX_EVENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(lost connection|conversation) with (\S+?)\[([^\]]+)\](?: timed out)? while (.+?)\s*$").unwrap()
});
static POSTFIX_CONNECT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bconnect to (\S+?)\[([^\]]+)\](?::(\d+))?: (.+?)\s*$").unwrap());

fn parse_postfix(text: &str) -> Option<LogLine> {
    let mut line = LogLine::new(LogFormat::Postfix);
    if let Some(captures) = POSTFIX_PREFIX.captures(text) {
        line.program = Some(captures[1].to_owned());
        line.pid = captures[2].parse().ok();
        line.queue_id = Some(captures[3].to_owned());
    }

    if let Some(status_at) = text.find("status=") {
        let after_status = &text[status_at..];
        let detail_at = after_status.find(" (");
        let fields_end = status_at + detail_at.unwrap_or(after_status.len());
        read_postfix_fields(&text[..fields_end], &mut line);
        if let Some(open) = detail_at {
            read_postfix_detail(&after_status[open + 2..], &mut line);
        }
        return Some(line);
    }

    if let Some(captures) = POSTFIX_EVENT.captures(text) {
        line.event = Some(if &captures[1] == "conversation" { "timed out" } else { "lost connection" }.to_owned());
        line.relay_host = Some(captures[2].to_owned());
        line.relay_ip = captures[3].parse().ok();
        line.stage = step_from_command(&captures[4]);
        return Some(line);
    }
    if let Some(captures) = POSTFIX_CONNECT.captures(text) {
        line.event = Some("connect failed".to_owned());
        line.relay_host = Some(captures[1].to_owned());
        line.relay_ip = captures[2].parse().ok();
        line.relay_port = captures.get(3).and_then(|port| port.as_str().parse().ok());
        line.detail = Some(captures[4].to_owned());
        return Some(line);
    }

    let peeled = peel(text);
    line.relay_host = Some(peeled.mx_host?);
    line.relay_ip = peeled.relay_ip;
    line.stage = peeled.stage;
    line.set_reply(&peeled.rest);
    Some(line)
}

fn read_postfix_fields(text: &str, line: &mut LogLine) {
    for captures in POSTFIX_FIELD.captures_iter(text) {
        let value = &captures[2];
        if value.contains(CUT) {
            continue;
        }
        match &captures[1] {
            "to" => line.recipient = Some(value.trim_matches(['<', '>']).to_owned()),
            "relay" => {
                if let Some(relay) = RELAY_VALUE.captures(value) {
                    line.relay_host = Some(relay[1].to_owned());
                    line.relay_ip = relay[2].parse().ok();
                    line.relay_port = relay.get(3).and_then(|port| port.as_str().parse().ok());
                } else if value != "none" {
                    line.relay_host = Some(value.to_owned());
                }
            }
            "delay" => line.delay = Some(value.to_owned()),
            "delays" => line.delays = Some(value.to_owned()),
            "dsn" => line.dsn = Some(value.to_owned()),
            "status" => line.status = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// Reads the parenthesized text after `status=…`: a remote reply with its
/// wrapper, or Postfix's own explanation.
fn read_postfix_detail(detail: &str, line: &mut LogLine) {
    let detail = detail.trim_end();
    let detail = detail.strip_suffix(')').unwrap_or(detail).trim();
    if detail.is_empty() || detail == CUT.to_string() {
        return;
    }

    let peeled = peel(detail);
    if peeled.mx_host.is_some() || peeled.stage.is_some() {
        line.stage = peeled.stage;
        line.set_reply(&peeled.rest);
    } else {
        line.detail = Some(detail.to_owned());
    }
}

// --- Exim ----------------------------------------------------------------

static EXIM_DELIVERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4})\s+(\*\*|==|=>|->|\*>)\s+(\S+)").unwrap()
});
static EXIM_RECIPIENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"after (?:pipelined )?RCPT TO:<([^>]*)>").unwrap());

fn parse_exim_debug(text: &str) -> Option<LogLine> {
    if let Some(reply) = text.strip_prefix("SMTP<<") {
        let mut line = LogLine::new(LogFormat::EximDebug);
        line.set_reply(reply);
        return Some(line);
    }
    if let Some(command) = text.strip_prefix("SMTP>>") {
        let mut line = LogLine::new(LogFormat::EximDebug);
        line.event = Some("command".to_owned());
        line.detail = Some(command.trim().to_owned());
        line.stage = step_from_command(command);
        return Some(line);
    }
    let record = text.lines().skip_while(|record_line| record_line.starts_with("LOG:")).collect::<Vec<_>>().join(" ");
    parse_exim(&record, LogFormat::EximDebug)
}

fn parse_exim(text: &str, format: LogFormat) -> Option<LogLine> {
    let mut line = LogLine::new(format);
    if let Some(captures) = EXIM_DELIVERY.captures(text) {
        line.queue_id = Some(captures[1].to_owned());
        line.status = match &captures[2] {
            "**" => Some("bounced".to_owned()),
            "==" => Some("deferred".to_owned()),
            _ => Some("sent".to_owned()),
        };
        line.recipient = Some(captures[3].to_owned());
    }
    if let Some(captures) = EXIM_RECIPIENT.captures(text)
        && !captures[1].contains(CUT)
    {
        line.recipient = Some(captures[1].to_owned());
    }

    let peeled = peel(text);
    if peeled.mx_host.is_none() && peeled.stage.is_none() {
        return None;
    }
    line.relay_host = peeled.mx_host;
    line.relay_ip = peeled.relay_ip;
    line.stage = peeled.stage;
    line.set_reply(&peeled.rest);
    Some(line)
}

// --- KumoMTA -------------------------------------------------------------

fn parse_kumomta(text: &str) -> Option<LogLine> {
    let record: serde_json::Value =
        serde_json::from_str(text).or_else(|_| serde_json::from_str(&remove_cut_marks(text))).ok()?;
    let record = record.as_object()?;
    let string = |value: Option<&serde_json::Value>| {
        value.and_then(|value| value.as_str()).filter(|value| !value.is_empty()).map(str::to_owned)
    };

    let mut line = LogLine::new(LogFormat::KumomtaJson);
    let kind = string(record.get("type"));
    line.queue_id = string(record.get("id"));
    line.sender = string(record.get("sender"));
    line.recipient = string(record.get("recipient"));
    line.bounce_classification = string(record.get("bounce_classification"));
    line.status = kind.as_deref().and_then(kumomta_status).map(str::to_owned);

    let peer = record.get("peer_address");
    let peer_ip =
        peer.and_then(|peer| peer.get("addr")).and_then(|addr| addr.as_str()).and_then(|addr| addr.parse().ok());
    // NOTE: the egress source of a delivery record is not read, so
    // `source_ip` stays empty for everything but receptions.
    if kind.as_deref() == Some("Reception") {
        line.source_ip = peer_ip;
    } else {
        line.relay_ip = peer_ip;
        line.relay_host = string(peer.and_then(|peer| peer.get("name")));
    }
    line.event = kind;

    if let Some(response) = record.get("response") {
        line.code = response.get("code").and_then(|code| code.as_u64()).and_then(|code| u16::try_from(code).ok());
        let content = string(response.get("content"));
        if let Some(content) = &content {
            line.internal = content.starts_with("KumoMTA internal");
            line.reply = Some(content.clone());
            line.enhanced = Reply::parse_text(content).enhanced;
        }
        if let Some(enhanced) = response.get("enhanced_code").and_then(kumomta_enhanced) {
            line.enhanced = Some(enhanced);
        }
        line.stage = string(response.get("command")).and_then(|command| step_from_command(&command));
    }
    Some(line)
}

fn kumomta_status(kind: &str) -> Option<&'static str> {
    match kind {
        "Reception" => Some("received"),
        "Delivery" => Some("sent"),
        "TransientFailure" => Some("deferred"),
        "Bounce" | "AdminBounce" => Some("bounced"),
        "Expiration" => Some("expired"),
        _ => None,
    }
}

/// Reads KumoMTA's `{"class":5,"subject":7,"detail":1}` form.
fn kumomta_enhanced(value: &serde_json::Value) -> Option<String> {
    let part = |name: &str| value.get(name).and_then(|part| part.as_u64());
    Some(format!("{}.{}.{}", part("class")?, part("subject")?, part("detail")?))
}

/// Removes `…` cut marks that stand between JSON fields, with the comma
/// next to each, so a record cut for publication parses again. Marks inside
/// strings are kept.
fn remove_cut_marks(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for character in text.chars() {
        if in_string {
            output.push(character);
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                output.push(character);
            }
            CUT => {
                if output.trim_end().ends_with(',') {
                    let kept = output.trim_end().len() - 1;
                    output.truncate(kept);
                }
            }
            _ => output.push(character),
        }
    }
    output
}

// --- ZoneMTA -------------------------------------------------------------

static ZONE_MTA_LEVEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(ERR!|WARN|warn|info|verb|silly|http|error)\s").unwrap());
static ZONE_MTA_EVENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s)([A-Z][A-Z_]{3,})(?:\[([\w-]+)\])?(?:\s+\[([\w-]+)\])?(?:\s|$)").unwrap());
static ZONE_MTA_QUEUE_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s)([0-9a-f]{12,}\.\d{3})(?:\s|$)").unwrap());
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"(?:^|\s)(\w+)=("(?:[^"\\]|\\.)*"?|\S+)"#).unwrap());

fn parse_zone_mta(text: &str) -> Option<LogLine> {
    let mut line = LogLine::new(LogFormat::ZoneMta);
    let (level, rest) = text.split_once(char::is_whitespace)?;
    line.level = Some(level.to_owned());

    let captures = ZONE_MTA_EVENT.captures(rest)?;
    let event = captures[1].to_owned();
    line.category = captures.get(2).map(|category| category.as_str().to_owned());
    line.session = captures.get(3).map(|session| session.as_str().to_owned());
    line.status = match event.as_str() {
        "REJECTED" => Some("rejected".to_owned()),
        "DEFERRED" => Some("deferred".to_owned()),
        "ACCEPTED" => Some("sent".to_owned()),
        _ => None,
    };
    line.event = Some(event);
    line.queue_id = ZONE_MTA_QUEUE_ID.captures(rest).map(|id| id[1].to_owned());

    for pair in KEY_VALUE.captures_iter(rest) {
        let raw_value = &pair[2];
        let value = raw_value.strip_prefix('"').map_or(raw_value, |quoted| quoted.strip_suffix('"').unwrap_or(quoted));
        let complete_value = (!value.contains(CUT)).then(|| value.to_owned());
        match &pair[1] {
            "src" => line.source_ip = value.parse().ok(),
            "from" => line.sender = complete_value.clone(),
            "to" => line.recipient = complete_value,
            "connected" => line.connected = Some(value.trim_end_matches('.').to_owned()),
            "error" => {
                let peeled = peel(value);
                line.stage = peeled.stage;
                if STARTS_WITH_CODE.is_match(&peeled.rest) {
                    line.set_reply(&peeled.rest);
                } else {
                    line.detail = Some(value.to_owned());
                }
            }
            "response" => line.set_reply(value),
            _ => {}
        }
    }
    Some(line)
}

static STARTS_WITH_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[2-5]\d\d(?:[ -]|$)").unwrap());

// --- Haraka --------------------------------------------------------------

static HARAKA_REMOTE_CLOSED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Remote end (\S+):(\d+) closed connection").unwrap());
static HARAKA_TEMP_FAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Temp failing .*? for (\d+) seconds: (.+?)\s*$").unwrap());
static HARAKA_BOUNCE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"bouncing mail: (.+?)\s*$").unwrap());

fn parse_haraka(text: &str) -> Option<LogLine> {
    let mut line = LogLine::new(LogFormat::Haraka);
    if let Some(captures) = HARAKA_REMOTE_CLOSED.captures(text) {
        line.event = Some("connection closed".to_owned());
        line.relay_ip = captures[1].trim_matches(['[', ']']).parse().ok();
        line.relay_port = captures[2].parse().ok();
        return Some(line);
    }
    if let Some(captures) = HARAKA_TEMP_FAIL.captures(text) {
        line.status = Some("deferred".to_owned());
        line.retry_s = captures[1].parse().ok();
        line.detail = Some(captures[2].to_owned());
        return Some(line);
    }
    if let Some(captures) = HARAKA_BOUNCE.captures(text) {
        line.status = Some("bounced".to_owned());
        line.detail = Some(captures[1].to_owned());
        return Some(line);
    }
    None
}

// --- OpenSMTPD -----------------------------------------------------------

static OPENSMTPD_RELAY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\brelay: (Ok|TempFail|PermFail|Loop) for ([^:]+): (.*)$").unwrap());
static OPENSMTPD_RELAY_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\brelay=(\S+?)(?: \(([^)]*)\))?,").unwrap());
static OPENSMTPD_FIELD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(from|to|delay)=([^,\s]+)").unwrap());
static OPENSMTPD_ERROR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"smtp-out: Error on session (\S+): (.+?)\s*$").unwrap());

fn parse_opensmtpd(text: &str) -> Option<LogLine> {
    let mut line = LogLine::new(LogFormat::Opensmtpd);
    if let Some(captures) = OPENSMTPD_RELAY.captures(text) {
        line.status = Some(
            match &captures[1] {
                "Ok" => "sent",
                "TempFail" => "deferred",
                _ => "bounced",
            }
            .to_owned(),
        );
        let envelope = captures[2].trim();
        if !envelope.contains(CUT) {
            line.queue_id = Some(envelope.to_owned());
        }

        let fields = &captures[3];
        let (fields, stat) = match fields.find("stat=") {
            Some(position) => (&fields[..position], Some(&fields[position + "stat=".len()..])),
            None => (fields, None),
        };
        if let Some(relay) = OPENSMTPD_RELAY_FIELD.captures(fields) {
            line.relay_ip = relay[1].parse().ok();
            line.relay_host = relay.get(2).map(|host| host.as_str().to_owned());
        }
        for pair in OPENSMTPD_FIELD.captures_iter(fields) {
            let value = &pair[2];
            if value.contains(CUT) {
                continue;
            }
            match &pair[1] {
                "from" => line.sender = Some(value.trim_matches(['<', '>']).to_owned()),
                "to" => line.recipient = Some(value.trim_matches(['<', '>']).to_owned()),
                "delay" => line.delay = Some(value.to_owned()),
                _ => {}
            }
        }
        if let Some(stat) = stat {
            if STARTS_WITH_CODE.is_match(stat.trim()) {
                line.set_reply(stat);
            } else {
                line.detail = Some(stat.trim().to_owned());
            }
        }
        return Some(line);
    }
    if let Some(captures) = OPENSMTPD_ERROR.captures(text) {
        if !captures[1].contains(CUT) {
            line.session = Some(captures[1].to_owned());
        }
        line.detail = Some(captures[2].to_owned());
        return Some(line);
    }
    None
}
