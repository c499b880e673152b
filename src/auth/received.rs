//! Received trace fields (RFC 5321 section 4.4) and the hop at which the
//! receiving gateway took the message.
//!
//! A Received value is a list of clauses (`from`, `by`, `via`, `with`, `id`,
//! `for`), each a keyword, a value and optional comments, followed by `;`
//! and the date. MTAs add more than the grammar allows (Microsoft's
//! `with Microsoft SMTP Server`, Exim's words after the protocol comment,
//! Postfix's TLS comment between `from` and `by`), so words the grammar does
//! not place are skipped rather than rejected.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::lexer::{self, Mode, Token};
use super::select::TrustedIds;

/// One parsed Received value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The `from` domain: the name the client gave in HELO or EHLO, or an
    /// address literal such as `[192.0.2.1]`.
    pub from: Option<String>,
    /// The comment after the `from` domain (TCP-info): the reverse DNS name
    /// and the address the receiver saw, e.g. `mail.example.com [192.0.2.1]`.
    pub from_info: Option<String>,
    /// The client address, from the address literal or the TCP-info.
    pub client_ip: Option<IpAddr>,
    /// The name the receiver found for the client address (`unknown` when the
    /// lookup failed, as Postfix writes it), with any final dot removed.
    pub client_host: Option<String>,
    /// The host that added this field.
    pub by: Option<String>,
    /// The comment after the `by` domain, often the software name.
    pub by_info: Option<String>,
    pub via: Option<String>,
    /// The protocol (`SMTP`, `ESMTP`, `ESMTPS`, `ESMTPSA`, `LMTP`, ...), or
    /// all the words an MTA wrote there (`Microsoft SMTP Server`).
    pub with: Option<String>,
    pub id: Option<String>,
    /// The recipient from the `for` clause, without angle brackets.
    pub for_recipient: Option<String>,
    /// Every comment in the clause part, in order.
    pub comments: Vec<String>,
    /// The text after the last `;`, unfolded and trimmed.
    pub date_text: Option<String>,
    /// `date_text` parsed as an RFC 5322 date.
    pub date: Option<DateTime<FixedOffset>>,
}

impl Received {
    /// True when the hop used TLS: the `with` protocol is one of the TLS
    /// forms registered by RFC 3848 and RFC 6531 (ESMTPS, ESMTPSA, LMTPS,
    /// UTF8SMTPS, ...), or Gmail's `SMTPS`, or a comment names a TLS version.
    pub fn uses_tls(&self) -> bool {
        let protocol_has_tls = self.with.as_deref().is_some_and(|with| {
            let protocol = with.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            let protocol = protocol.strip_suffix('A').unwrap_or(&protocol);
            protocol.ends_with("SMTPS") || protocol.ends_with("LMTPS")
        });
        protocol_has_tls || self.tls_version().is_some()
    }

    /// Returns the TLS version that a comment names, as written: `TLS1_2`
    /// (Microsoft), `TLSv1.3` (Postfix, Sendmail) or `TLS1.3` (Exim).
    pub fn tls_version(&self) -> Option<&str> {
        self.comments.iter().find_map(|comment| {
            comment.split(|c: char| c.is_whitespace() || matches!(c, '=' | ',' | '(' | ')')).find(|word| {
                let rest = word.strip_prefix("TLS").or_else(|| word.strip_prefix("tls"));
                rest.is_some_and(|rest| {
                    let rest = rest.trim_start_matches(['v', 'V']);
                    rest.starts_with(|c: char| c.is_ascii_digit())
                })
            })
        })
    }
}

/// Parses one Received value. Every clause is optional, so any text parses;
/// a value with no recognizable clause gives a `Received` with only
/// `comments` and the date set.
pub fn parse_received(value: &str) -> Received {
    let (clauses, date_text) = split_date(value);
    let mut received = Received::default();

    if let Some(date_text) = date_text {
        let date_text = super::unfold(date_text).split_whitespace().collect::<Vec<_>>().join(" ");
        received.date = parse_date(&date_text);
        received.date_text = Some(date_text).filter(|text| !text.is_empty());
    }

    let mut clause: Option<Clause> = None;
    // True while the clause has only its keyword and value, so the next
    // comment belongs to its value (TCP-info after `from`, software after
    // `by`) and the next words extend `with` or `via`.
    let mut fresh = false;

    for spanned in lexer::tokenize(clauses, Mode::Trace) {
        match spanned.token {
            Token::Word(word) => {
                if let Some(next) = Clause::from_keyword(&word) {
                    clause = Some(next);
                    fresh = false;
                    continue;
                }
                match clause {
                    Some(current) if !fresh && current.value(&received).is_none() => {
                        current.set(&mut received, word);
                        fresh = true;
                    }
                    Some(current) if fresh && current.takes_words() => {
                        current.append(&mut received, &word);
                    }
                    // A word the grammar does not place, such as Exim's
                    // cipher name after `with esmtps (TLS1.3) tls`.
                    _ => fresh = false,
                }
            }
            Token::Comment(text) => {
                if fresh {
                    match clause {
                        Some(Clause::From) if received.from_info.is_none() => received.from_info = Some(text.clone()),
                        Some(Clause::By) if received.by_info.is_none() => received.by_info = Some(text.clone()),
                        _ => {}
                    }
                }
                if clause == Some(Clause::From) {
                    read_tcp_info(&mut received, &text);
                }
                received.comments.push(text);
                fresh = false;
            }
            Token::Quoted(_) | Token::Equals | Token::Semicolon => fresh = false,
        }
    }

    if received.client_ip.is_none()
        && let Some(from) = received.from.as_deref()
    {
        received.client_ip = parse_address_literal(from);
    }
    if let Some(recipient) = received.for_recipient.as_mut() {
        *recipient = recipient.trim_start_matches('<').trim_end_matches('>').to_string();
    }
    received
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    From,
    By,
    Via,
    With,
    Id,
    For,
}

impl Clause {
    fn from_keyword(word: &str) -> Option<Clause> {
        let clause = match word.to_ascii_lowercase().as_str() {
            "from" => Clause::From,
            "by" => Clause::By,
            "via" => Clause::Via,
            "with" => Clause::With,
            "id" => Clause::Id,
            "for" => Clause::For,
            _ => return None,
        };
        Some(clause)
    }

    /// `with` and `via` values may run over several words.
    fn takes_words(self) -> bool {
        matches!(self, Clause::With | Clause::Via)
    }

    fn slot(self, received: &mut Received) -> &mut Option<String> {
        match self {
            Clause::From => &mut received.from,
            Clause::By => &mut received.by,
            Clause::Via => &mut received.via,
            Clause::With => &mut received.with,
            Clause::Id => &mut received.id,
            Clause::For => &mut received.for_recipient,
        }
    }

    fn value(self, received: &Received) -> Option<&String> {
        match self {
            Clause::From => received.from.as_ref(),
            Clause::By => received.by.as_ref(),
            Clause::Via => received.via.as_ref(),
            Clause::With => received.with.as_ref(),
            Clause::Id => received.id.as_ref(),
            Clause::For => received.for_recipient.as_ref(),
        }
    }

    fn set(self, received: &mut Received, word: String) {
        *self.slot(received) = Some(word);
    }

    fn append(self, received: &mut Received, word: &str) {
        if let Some(value) = self.slot(received) {
            value.push(' ');
            value.push_str(word);
        }
    }
}

/// Splits a Received value at its last `;` outside comments and quoted
/// strings.
fn split_date(value: &str) -> (&str, Option<&str>) {
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    let mut last = None;
    for (index, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ';' if !quoted && depth == 0 => last = Some(index),
            _ => {}
        }
    }
    match last {
        Some(index) => (&value[..index], Some(&value[index + 1..])),
        None => (value, None),
    }
}

/// Reads the client address and reverse DNS name from a comment of the
/// `from` clause: `mail.example.com [192.0.2.1]`, `unknown [192.0.2.1]`,
/// `[IPv6:2001:db8::1]`, a bare `2001:db8::1` (Microsoft, qmail) or
/// `[192.0.2.1] helo=x` (Exim). The first address found wins. The word
/// after `HELO` or `EHLO` (qmail's `(HELO mail.example.com)`) is the name the
/// client gave, not the reverse DNS name, so it is skipped.
fn read_tcp_info(received: &mut Received, comment: &str) {
    let mut after_helo = false;
    for word in comment.split(|c: char| c.is_whitespace() || c == ',') {
        if word.is_empty() || word.contains('=') {
            continue;
        }
        if std::mem::take(&mut after_helo) {
            continue;
        }
        if word.eq_ignore_ascii_case("helo") || word.eq_ignore_ascii_case("ehlo") {
            after_helo = true;
            continue;
        }
        if received.client_ip.is_none()
            && let Some(address) = parse_address_literal(word).or_else(|| word.parse().ok())
        {
            received.client_ip = Some(address);
            continue;
        }
        if received.client_host.is_none() && !word.starts_with('[') && word.parse::<IpAddr>().is_err() {
            let is_name = word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if is_name && (word.contains('.') || word.eq_ignore_ascii_case("unknown") || word == "localhost") {
                received.client_host = Some(word.trim_end_matches('.').to_string());
            }
        }
    }
}

/// Parses `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[192.0.2.1]:25`.
fn parse_address_literal(word: &str) -> Option<IpAddr> {
    let inner = word.strip_prefix('[')?;
    let inner = &inner[..inner.find(']')?];
    let inner = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")).unwrap_or(inner);
    inner.parse().ok()
}

/// Parses an RFC 5322 date as trace fields carry it, ignoring comments such
/// as `(UTC)` or `(PST)` that RFC 2822 parsers reject.
pub fn parse_date(text: &str) -> Option<DateTime<FixedOffset>> {
    let mut bare = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    DateTime::parse_from_rfc2822(&bare).ok()
}

/// The hop at which the receiving gateway took the message from the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Position of the hop's field in the `received` list given to
    /// [`gateway_hop`], top first.
    pub index: usize,
    /// The gateway host that received the message.
    pub by: String,
    /// The name the client gave in HELO or EHLO.
    pub helo: Option<String>,
    /// The address the gateway saw the connection from.
    pub client_ip: Option<IpAddr>,
    /// The gateway's reverse DNS name for `client_ip`.
    pub client_host: Option<String>,
    /// The `with` protocol.
    pub protocol: Option<String>,
    /// True when the hop used TLS, see [`Received::uses_tls`].
    pub tls: bool,
    /// The TLS version a comment names, as written.
    pub tls_version: Option<String>,
    /// When the gateway received the message, by its own clock.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// Seconds from the message's Date header to `received_at`. Negative
    /// when the sender's clock runs ahead of the gateway's.
    pub delay_after_date_seconds: Option<i64>,
    /// Seconds from the bottom-most to the top-most dated Received field: the
    /// time the message spent between its first and last recorded hops.
    pub chain_transit_seconds: Option<i64>,
}

/// Finds the hop at which the gateway received the message.
///
/// A Received field belongs to the gateway when its `by` host equals, or is
/// a subdomain of, a gateway host or an authserv-id in `gateway`. The walk
/// starts at the top-most such field and goes down through the fields of the
/// gateway's internal steps: Proofpoint's `pps.filterd` and `pps.reinject`,
/// a loopback client, or a client that is itself a gateway host. It stops at
/// the first field whose client is outside, which is the entry hop. A field
/// below it can have been written by the sender, so a forged `by` naming the
/// gateway further down is never reached.
///
/// `message_date` is the message's Date header; it gives the delay between
/// composing and arrival.
pub fn gateway_hop(
    received: &[Received],
    gateway: &TrustedIds,
    message_date: Option<DateTime<FixedOffset>>,
) -> Option<Hop> {
    let index = gateway_entry_index(received, gateway)?;
    let entry = &received[index];

    let received_at = entry.date;
    let delay_after_date_seconds = match (received_at, message_date) {
        (Some(received_at), Some(sent)) => Some((received_at - sent).num_seconds()),
        _ => None,
    };

    Some(Hop {
        index,
        by: entry.by.clone().unwrap_or_default(),
        helo: entry.from.clone().filter(|from| !from.starts_with('[')),
        client_ip: entry.client_ip,
        client_host: entry.client_host.clone(),
        protocol: entry.with.clone(),
        tls: entry.uses_tls(),
        tls_version: entry.tls_version().map(str::to_string),
        received_at,
        delay_after_date_seconds,
        chain_transit_seconds: chain_transit_seconds(received),
    })
}

/// Returns the index of the gateway's entry hop in `received`, as
/// [`gateway_hop`] describes it.
pub(crate) fn gateway_entry_index(received: &[Received], gateway: &TrustedIds) -> Option<usize> {
    let is_gateway = |field: &Received| field.by.as_deref().is_some_and(|by| gateway.matches_host(by));

    let mut index = received.iter().position(is_gateway)?;
    while is_internal_client(&received[index], gateway) {
        match received.get(index + 1) {
            Some(below) if is_gateway(below) => index += 1,
            _ => break,
        }
    }
    Some(index)
}

/// True when the client of a hop is the gateway itself: a loopback address,
/// a Proofpoint internal stage, or a host that matches the gateway.
fn is_internal_client(field: &Received, gateway: &TrustedIds) -> bool {
    if field.client_ip.is_some_and(|address| address.is_loopback()) {
        return true;
    }
    let names = [field.from.as_deref(), field.client_host.as_deref()];
    names.into_iter().flatten().any(|name| {
        let name = name.to_ascii_lowercase();
        name.starts_with("pps.") || name == "localhost" || gateway.matches_host(&name)
    })
}

/// Returns the seconds between the bottom-most and the top-most Received
/// fields that carry a valid date, or `None` with fewer than two.
pub fn chain_transit_seconds(received: &[Received]) -> Option<i64> {
    let mut dates = received.iter().filter_map(|field| field.date);
    let last = dates.next()?;
    let first = dates.next_back()?;
    Some((last - first).num_seconds())
}

/// Returns the message's Date header, parsed, from `headers` (name, raw
/// value). The first Date field is used.
pub fn message_date(headers: &[(String, String)]) -> Option<DateTime<FixedOffset>> {
    let (_, value) = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("Date"))?;
    parse_date(&super::unfold(value))
}
