//! SMTP replies as the simulator sends them (RFC 5321 section 4.2): a
//! three-digit code and one or more text lines, with placeholders that are
//! filled in per connection.

use std::fmt;
use std::net::IpAddr;

/// Placeholder names a reply may contain, written as `{name}`.
pub const PLACEHOLDERS: &[&str] = &["ip", "hostname", "queue_id"];

/// RFC 5321 section 4.5.3.1.5: a reply line, code and CRLF included.
pub const MAX_REPLY_LINE_OCTETS: usize = 512;

/// Maximum length of `{ip}` (an IPv6 address) and of `{queue_id}`.
const IP_MAX_OCTETS: usize = 39;
const QUEUE_ID_OCTETS: usize = 10;

/// An SMTP reply: one code and its text lines, without the code prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

/// The values that fill a reply's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    pub ip: IpAddr,
    pub hostname: &'a str,
    /// The transaction's queue id, or the connection's id outside a transaction.
    pub queue_id: &'a str,
}

impl Reply {
    /// Builds a one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self { code, lines: vec![text.into()] }
    }

    /// Builds a multi-line reply, such as the EHLO reply.
    pub fn from_lines(code: u16, lines: Vec<String>) -> Self {
        assert!(!lines.is_empty(), "a reply has at least one line");
        Self { code, lines }
    }

    /// Parses a reply written in a policy: lines separated by `\n`, the first
    /// starting with the code. Later lines may repeat the code (`421-4.7.28 …`
    /// or `421 4.7.28 …`) or start with their text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line));
        let first = lines.next().unwrap_or_default();
        let Some((code, first_text)) = split_code(first) else {
            return Err(format!(
                "{first:?} does not start with a reply code; write a three-digit code first, \
                 such as \"451 4.7.1 Try again later\""
            ));
        };
        if !(200..600).contains(&code) {
            return Err(format!("reply code {code} is not a 2xx, 4xx or 5xx code"));
        }

        let mut reply = Self { code, lines: vec![first_text.to_string()] };
        for (index, line) in lines.enumerate() {
            let text = match split_code(line) {
                Some((line_code, rest)) if line_code == code => rest,
                Some((line_code, _)) => {
                    return Err(format!(
                        "line {} starts with code {line_code} but the reply's code is {code}; \
                         every line of a reply carries the same code",
                        index + 2
                    ));
                }
                None => line,
            };
            reply.lines.push(text.to_string());
        }

        for (index, line) in reply.lines.iter().enumerate() {
            check_line(line).map_err(|message| format!("line {}: {message}", index + 1))?;
        }
        Ok(reply)
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    /// Text lines, without the code prefixes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// True for 2xx and 3xx codes.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// True for 4xx codes: the client should retry later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// True for 5xx codes.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// True for 421, after which an SMTP server closes the connection
    /// (RFC 5321 section 3.8).
    pub fn closes_connection(&self) -> bool {
        self.code == 421
    }

    /// Returns the maximum length of a wire line of this reply once its
    /// placeholders are filled for a simulator named `hostname`, code and
    /// CRLF included.
    pub fn longest_line_octets(&self, hostname: &str) -> usize {
        self.lines
            .iter()
            .map(|line| {
                let filled: usize = placeholders(line)
                    .map(|name| match name {
                        "ip" => IP_MAX_OCTETS,
                        "hostname" => hostname.len(),
                        "queue_id" => QUEUE_ID_OCTETS,
                        other => other.len() + 2,
                    })
                    .sum();
                let written: usize = placeholders(line).map(|name| name.len() + 2).sum();
                // Code, separator and CRLF take 6 octets.
                line.len() - written + filled + 6
            })
            .max()
            .unwrap_or(5)
    }

    /// Returns a copy with `{ip}`, `{hostname}` and `{queue_id}` replaced.
    pub fn fill(&self, context: &ReplyContext<'_>) -> Self {
        let ip = context.ip.to_string();
        let lines = self
            .lines
            .iter()
            .map(|line| {
                line.replace("{ip}", &ip)
                    .replace("{hostname}", context.hostname)
                    .replace("{queue_id}", context.queue_id)
            })
            .collect();
        Self { code: self.code, lines }
    }

    /// Formats the reply for the wire: `code-text` on every line but the last,
    /// `code text` on the last (a bare `code` when its text is empty), each
    /// ending in CRLF.
    pub fn to_wire(&self) -> String {
        let mut wire = String::new();
        for (index, line) in self.lines.iter().enumerate() {
            let last = index + 1 == self.lines.len();
            if last && line.is_empty() {
                wire.push_str(&format!("{}\r\n", self.code));
            } else {
                let separator = if last { ' ' } else { '-' };
                wire.push_str(&format!("{}{separator}{line}\r\n", self.code));
            }
        }
        wire
    }
}

/// The reply as a client logs it: the wire lines joined by `\n`, without CRLF.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        let mut lines = wire.split_terminator("\r\n");
        if let Some(first) = lines.next() {
            f.write_str(first)?;
        }
        for line in lines {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

/// Splits `421 text`, `421-text` or a bare `421` into the code and the text.
fn split_code(line: &str) -> Option<(u16, &str)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let rest = &line[3..];
    let text = match rest.as_bytes().first() {
        None => "",
        Some(b' ' | b'-') => &rest[1..],
        Some(_) => return None,
    };
    Some((digits.parse().ok()?, text))
}

/// Checks one text line: printable characters and known placeholders.
fn check_line(line: &str) -> Result<(), String> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("control characters are not allowed in a reply".into());
    }
    for name in placeholders(line) {
        let identifier = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier && !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; use {}",
                PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

/// Iterates over the names between braces in a line, such as `ip` in `[{ip}]`.
fn placeholders(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || {
        let open = rest.find('{')?;
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        rest = &after[close + 1..];
        Some(&after[..close])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ReplyContext<'static> {
        ReplyContext { ip: "192.0.2.7".parse().unwrap(), hostname: "mx.example.test", queue_id: "4A2B" }
    }

    #[test]
    fn parse_single_line() {
        let reply = Reply::parse("451 4.7.1 Try again later").unwrap();
        assert_eq!(reply.code(), 451);
        assert_eq!(reply.lines(), ["4.7.1 Try again later"]);
    }

    #[test]
    fn parse_multi_line_strips_repeated_codes() {
        let reply = Reply::parse("421-4.7.28 first\n421-4.7.28 second\nthird").unwrap();
        assert_eq!(reply.lines(), ["4.7.28 first", "4.7.28 second", "third"]);
        assert_eq!(reply.to_wire(), "421-4.7.28 first\r\n421-4.7.28 second\r\n421 third\r\n");
    }

    #[test]
    fn parse_rejects_missing_code() {
        let error = Reply::parse("Deferred, try later").unwrap_err();
        assert!(error.contains("does not start with a reply code"), "{error}");
    }

    #[test]
    fn parse_rejects_mixed_codes() {
        let error = Reply::parse("220-ready\n521 5.7.1 blocked").unwrap_err();
        assert!(error.contains("line 2 starts with code 521"), "{error}");
    }

    #[test]
    fn parse_rejects_unknown_placeholder() {
        let error = Reply::parse("421 Deferred {client}").unwrap_err();
        assert!(error.contains("unknown placeholder {client}"), "{error}");
    }

    #[test]
    fn longest_line_counts_filled_placeholders() {
        let reply = Reply::parse("421 {hostname} {queue_id}").unwrap();
        assert_eq!(reply.longest_line_octets("mx.example.test"), 6 + 15 + 1 + 10);
        let reply = Reply::parse("421-{ip}\n421 {hostname}").unwrap();
        assert_eq!(reply.longest_line_octets("mx.example.test"), 6 + 39);
    }

    #[test]
    fn fill_replaces_placeholders() {
        let reply = Reply::parse("421 {ip} at {hostname} id {queue_id}").unwrap().fill(&context());
        assert_eq!(reply.to_string(), "421 192.0.2.7 at mx.example.test id 4A2B");
    }

    #[test]
    fn bare_code_has_empty_text() {
        let reply = Reply::parse("421").unwrap();
        assert_eq!(reply.to_wire(), "421\r\n");
    }
}
