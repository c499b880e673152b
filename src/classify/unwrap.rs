//! Removing what MTAs, bounces and sending libraries wrap around a reply:
//! Postfix's `host X[ip] said: … (in reply to RCPT TO command)` and
//! `refused to talk to me:`, DSN `Diagnostic-Code:` fields (RFC 3464),
//! Exim's `SMTP error from remote mail server after …:`, ZoneMTA and
//! Nodemailer's `response=`, and whole MTA log lines.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::smtp::record::{Reply, Step};

use super::log::parse_log_line;

/// A reply freed from its wrapper, with the facts the wrapper carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnwrappedReply {
    pub reply: Reply,
    /// The protocol step the reply belongs to, when the wrapper names it.
    pub stage: Option<Step>,
    /// The receiving host the wrapper names (Postfix's `host X[ip]`, a DSN's
    /// `Remote-MTA`, Exim's `H=`).
    pub mx_host: Option<String>,
    /// The receiving host's address, when the wrapper names it.
    pub relay_ip: Option<IpAddr>,
}

/// Wrappers are peeled one at a time; real wrappers nest two or three deep.
const MAX_LAYERS: usize = 6;

static STARTS_WITH_REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:[2-5]\d\d(?:[ -]|$)|#?[245]\.\d{1,3}\.\d{1,3}(?:\s|$))").unwrap());
static POSTFIX_SAID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)^(?:.*?\s)??host (\S+?)\[([^\]]*)\] said:\s*(.*)$").unwrap());
static POSTFIX_REFUSED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)^(?:.*?\s)??host (\S+?)\[([^\]]*)\] refused to talk to me:\s*(.*)$").unwrap());
static EXIM_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?s)^.*?(?:\bH=(\S+) \[([^\]]+)\][^:]*:\s*)?SMTP error from remote mail (?:server|host) after (.+?):\s+(?:host (\S+) \[([^\]]+)\]:\s*)?(.*)$",
    )
    .unwrap()
});
static RESPONSE_FIELD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)^(.*?)\bresponse=(.*)$").unwrap());
static LIBRARY_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)^.*?host '([^']+)' rejected command '([^']+)' with code (\d{3})(?: \(([^)]*)\))? '(.*)'\s*$")
        .unwrap()
});
static NODEMAILER_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?s)^.*?\b(Mail command failed|Recipient command failed|Data command failed|Message failed|Can't send mail - all recipients were rejected):\s*(.*)$",
    )
    .unwrap()
});
static EXCHANGE_RETURNED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?si)^.*?Remote Server returned '(.*)'\s*$").unwrap());
static DIAGNOSTIC_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?si)^\s*(smtp|x-[a-z0-9-]+);\s*(.*)$").unwrap());
static IN_REPLY_TO: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\(in reply to ([^)]*)\)").unwrap());
static IN_REPLY_TO_AT_END: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s*\(in reply to ([^)]*)\)\s*$").unwrap());
static EMBEDDED_REPLY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"said:\s*[2-5]\d\d[ -]").unwrap());

/// Strips the wrappers around one reply and parses what remains.
///
/// The input may be a whole MTA log line (see [`parse_log_line`]), a DSN
/// block or one of its `Diagnostic-Code` lines, a log fragment, a library's
/// error string, or the bare reply. A Postfix line that joined a multi-line
/// reply into one (`421-4.7.28 … 421-4.7.28 … 421 4.7.28 …`) is split back
/// into its lines. A reply that embeds another (`421 … said: 450 …`) keeps
/// the outer code, and a closing `(in reply to …)` stays with the inner one.
pub fn unwrap_reply(text: &str) -> UnwrappedReply {
    if let Some(line) = parse_log_line(text)
        && let Some(reply_text) = &line.reply
    {
        let with_code = match line.code {
            Some(code) if !STARTS_WITH_REPLY.is_match(reply_text) => format!("{code} {reply_text}"),
            _ => reply_text.clone(),
        };
        let mut unwrapped = unwrap_text(&with_code);
        unwrapped.stage = line.stage.or(unwrapped.stage);
        unwrapped.mx_host = line.relay_host.or(unwrapped.mx_host);
        unwrapped.relay_ip = line.relay_ip.or(unwrapped.relay_ip);
        return unwrapped;
    }
    unwrap_text(text)
}

/// The result of removing wrappers: the reply text that is left, and the
/// facts the wrappers carried.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub rest: String,
    pub stage: Option<Step>,
    pub mx_host: Option<String>,
    pub relay_ip: Option<IpAddr>,
}

fn unwrap_text(text: &str) -> UnwrappedReply {
    let peeled = peel(text);
    let lines = split_joined_lines(&peeled.rest);
    UnwrappedReply {
        reply: Reply::parse_text(&lines.join("\n")),
        stage: peeled.stage,
        mx_host: peeled.mx_host,
        relay_ip: peeled.relay_ip,
    }
}

/// Removes every wrapper around a reply and its closing `(in reply to …)`,
/// leaving the reply text as the wrapper logged it.
pub(super) fn peel(text: &str) -> Layer {
    let mut found = Layer { rest: text.trim().to_owned(), ..Layer::default() };

    if let Some(dsn) = read_dsn(&found.rest) {
        found = dsn;
    }

    for _ in 0..MAX_LAYERS {
        if STARTS_WITH_REPLY.is_match(&found.rest) {
            break;
        }
        let Some(layer) = peel_layer(&found.rest) else {
            break;
        };
        if layer.rest == found.rest {
            break;
        }
        found.rest = layer.rest;
        found.stage = found.stage.or(layer.stage);
        found.mx_host = found.mx_host.or(layer.mx_host);
        found.relay_ip = found.relay_ip.or(layer.relay_ip);
    }

    let (body, stage) = strip_in_reply_to(&found.rest);
    Layer { rest: body.trim().to_owned(), stage: found.stage.or(stage), ..found }
}

/// Removes the outermost wrapper that one of the known forms matches.
fn peel_layer(text: &str) -> Option<Layer> {
    if let Some(captures) = POSTFIX_SAID.captures(text) {
        return Some(Layer {
            rest: captures[3].trim().to_owned(),
            stage: None,
            mx_host: Some(captures[1].to_owned()),
            relay_ip: captures[2].parse().ok(),
        });
    }
    if let Some(captures) = POSTFIX_REFUSED.captures(text) {
        return Some(Layer {
            rest: captures[3].trim().to_owned(),
            stage: Some(Step::Greeting),
            mx_host: Some(captures[1].to_owned()),
            relay_ip: captures[2].parse().ok(),
        });
    }
    if let Some(captures) = EXIM_ERROR.captures(text) {
        let host = captures.get(1).or(captures.get(4)).map(|host| host.as_str().to_owned());
        let ip = captures.get(2).or(captures.get(5)).and_then(|ip| ip.as_str().parse().ok());
        return Some(Layer {
            rest: captures[6].trim().to_owned(),
            stage: step_from_command(&captures[3]),
            mx_host: host,
            relay_ip: ip,
        });
    }
    if let Some(captures) = LIBRARY_ERROR.captures(text) {
        return Some(Layer {
            rest: rebuild_library_reply(&captures[3], captures.get(4).map(|m| m.as_str()), &captures[5]),
            stage: step_from_command(&captures[2]),
            mx_host: Some(captures[1].to_owned()),
            relay_ip: None,
        });
    }
    if let Some(captures) = RESPONSE_FIELD.captures(text) {
        let before = &captures[1];
        let stage = before.contains("Invalid greeting").then_some(Step::Greeting);
        return Some(Layer { rest: response_value(&captures[2]), stage, ..Layer::default() });
    }
    if let Some(captures) = NODEMAILER_ERROR.captures(text) {
        let stage = match &captures[1] {
            "Mail command failed" => Some(Step::Mail),
            "Data command failed" => Some(Step::Data),
            "Message failed" => Some(Step::EndOfData),
            _ => Some(Step::Rcpt),
        };
        return Some(Layer { rest: captures[2].trim().to_owned(), stage, ..Layer::default() });
    }
    if let Some(captures) = EXCHANGE_RETURNED.captures(text) {
        return Some(Layer { rest: captures[1].trim().to_owned(), ..Layer::default() });
    }
    if let Some(captures) = DIAGNOSTIC_TYPE.captures(text) {
        return Some(Layer { rest: captures[2].trim().to_owned(), ..Layer::default() });
    }
    None
}

/// Reads a DSN's per-recipient fields (RFC 3464 section 2.3): the
/// `Diagnostic-Code` value with its folded lines, and `Remote-MTA`.
fn read_dsn(text: &str) -> Option<Layer> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|line| has_field_name(line, "diagnostic-code"))?;

    let mut value = field_value(lines[start]).to_owned();
    for folded in lines[start + 1..].iter().take_while(|line| line.starts_with([' ', '\t'])) {
        value.push(' ');
        value.push_str(folded.trim());
    }
    let rest = match DIAGNOSTIC_TYPE.captures(&value) {
        Some(captures) => captures[2].trim().to_owned(),
        None => value.trim().to_owned(),
    };

    let remote = lines
        .iter()
        .find(|line| has_field_name(line, "remote-mta"))
        .map(|line| field_value(line))
        .map(|value| value.split_once(';').map_or(value, |(_, name)| name).trim());
    let (mx_host, relay_ip) = match remote {
        Some(name) => match name.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => (None, Some(ip)),
            Err(_) => (Some(name.to_owned()), None),
        },
        None => (None, None),
    };
    Some(Layer { rest, stage: None, mx_host, relay_ip })
}

fn has_field_name(line: &str, name: &str) -> bool {
    line.split_once(':').is_some_and(|(field, _)| field.trim().eq_ignore_ascii_case(name))
}

fn field_value(line: &str) -> &str {
    line.split_once(':').map_or("", |(_, value)| value.trim())
}

/// Reads the value of a `response=` field. A quoted value ends at its
/// closing quote; ZoneMTA sometimes repeats the reply after a colon inside
/// the same string, and only the first copy is kept.
fn response_value(value: &str) -> String {
    let value = value.trim();
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or(quoted),
        None => value.trim_end_matches('"'),
    };
    let value = value.trim();

    let code = &value[..value.len().min(3)];
    if code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_digit()) {
        let repeat = format!(": {code} ");
        if let Some(position) = value[3..].find(&repeat) {
            return value[..3 + position].trim().to_owned();
        }
    }
    value.to_owned()
}

/// Rebuilds a reply from a library error that split it into code, enhanced
/// code and text. `0.0.0` is the filler such libraries write when the reply
/// carried no enhanced code.
fn rebuild_library_reply(code: &str, enhanced: Option<&str>, text: &str) -> String {
    match enhanced.map(str::trim) {
        Some(enhanced) if enhanced != "0.0.0" && !enhanced.is_empty() => {
            format!("{code} {enhanced} {text}")
        }
        _ => format!("{code} {text}"),
    }
}

/// Removes a closing `(in reply to X command)` and reads X as the stage,
/// unless the reply embeds another reply that the closing belongs to.
fn strip_in_reply_to(text: &str) -> (String, Option<Step>) {
    let closings = IN_REPLY_TO.find_iter(text).count();
    let embedded = EMBEDDED_REPLY.find_iter(text).count();
    if closings <= embedded {
        return (text.to_owned(), None);
    }
    match IN_REPLY_TO_AT_END.captures(text) {
        Some(captures) => {
            let start = captures.get(0).map_or(text.len(), |whole| whole.start());
            (text[..start].to_owned(), step_from_command(&captures[1]))
        }
        None => (text.to_owned(), None),
    }
}

/// Splits a multi-line reply that a log joined into one line back into its
/// lines, at each repeated `NNN-` or `NNN ` of the first line's code.
fn split_joined_lines(text: &str) -> Vec<String> {
    let is_joined = !text.contains('\n') && text.len() > 4 && text.as_bytes()[3] == b'-';
    let code = &text[..text.len().min(3)];
    if !is_joined || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.lines().map(str::to_owned).collect();
    }

    let continued = format!(" {code}-");
    let last = format!(" {code} ");
    let mut lines = Vec::new();
    let mut rest = text;
    loop {
        let next = [rest.find(&continued), rest.find(&last)].into_iter().flatten().min();
        match next {
            Some(position) => {
                lines.push(rest[..position].trim_end().to_owned());
                rest = &rest[position + 1..];
            }
            None => {
                lines.push(rest.to_owned());
                return lines;
            }
        }
    }
}

/// Reads the command or phase an MTA names (`RCPT TO command`, `end of
/// DATA command`, `initial connection`, `sending MAIL FROM`) as a step.
pub(super) fn step_from_command(command: &str) -> Option<Step> {
    let command = command.trim().to_ascii_lowercase();
    let command = command.strip_prefix("pipelined ").unwrap_or(&command);
    let command = command.strip_prefix("sending ").unwrap_or(command);

    if command.contains("end of data") || command.contains("message body") || command.starts_with("end of") {
        return Some(Step::EndOfData);
    }
    if command.contains("greeting") || command.contains("initial connection") || command.starts_with("connect") {
        return Some(Step::Greeting);
    }
    let first = command
        .trim_start_matches("performing the ")
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    match first {
        "rcpt" => Some(Step::Rcpt),
        "mail" => Some(Step::Mail),
        "data" => Some(Step::Data),
        "ehlo" => Some(Step::Ehlo),
        "helo" | "lhlo" => Some(Step::Helo),
        "starttls" => Some(Step::Starttls),
        "rset" => Some(Step::Rset),
        "quit" => Some(Step::Quit),
        _ => None,
    }
}
