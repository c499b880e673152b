//! Composing the messages a run sends: a minimal control message, and a bulk
//! message made from the sender's real template with only its per-copy
//! headers replaced (RFC 5322).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::Header as _;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;

use super::template::render;
use super::token::{TOKEN_HEADER, TrackingToken};

/// Template headers a bulk copy drops, all instances: signatures and trace
/// fields of an earlier delivery would be stale or forged on a new send.
const STRIPPED_HEADERS: [&str; 9] = [
    "DKIM-Signature",
    "ARC-Seal",
    "ARC-Message-Signature",
    "ARC-Authentication-Results",
    "Authentication-Results",
    "Received",
    "Return-Path",
    "Delivered-To",
    TOKEN_HEADER,
];

/// What varies between the messages of a run.
#[derive(Debug, Clone)]
pub struct ComposeContext {
    /// Display name of the From header, if any.
    pub from_name: Option<String>,
    pub from_address: String,
    /// The seed address, written to To and to `{seed}`.
    pub to: String,
    pub run_id: String,
    pub path: String,
    /// The path's pool; `{pool}` is empty without one.
    pub pool: Option<String>,
    pub stream: String,
    /// Position of the message in its stream, from 1.
    pub sequence: u32,
    pub token: TrackingToken,
    /// The run clock's time for Date and `{time}`.
    pub time: DateTime<Utc>,
    /// Headers the stream or path adds, such as `X-Virtual-MTA: pool-c`.
    pub extra_headers: Vec<(String, String)>,
}

impl ComposeContext {
    fn placeholder(&self, name: &str) -> Option<String> {
        let value = match name {
            "run_id" => self.run_id.clone(),
            "path" => self.path.clone(),
            "pool" => self.pool.clone().unwrap_or_default(),
            "seed" => self.to.clone(),
            "stream" => self.stream.clone(),
            "sequence" => self.sequence.to_string(),
            "token" => self.token.to_string(),
            "time" => self.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            _ => return None,
        };
        Some(value)
    }

    fn fill(&self, field: &'static str, text: &str) -> Result<String, ComposeError> {
        render(text, |name| self.placeholder(name)).map_err(|reason| ComposeError::Template { field, reason })
    }

    fn sender_domain(&self) -> Result<&str, ComposeError> {
        match self.from_address.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(domain),
            _ => Err(ComposeError::InvalidAddress { field: "From", address: self.from_address.clone() }),
        }
    }

    fn message_id(&self) -> Result<String, ComposeError> {
        Ok(self.token.message_id(self.sender_domain()?))
    }

    fn date(&self) -> String {
        self.time.to_rfc2822()
    }
}

/// A failure to compose a message.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid placeholder in the {field}: {reason}")]
    Template { field: &'static str, reason: String },
    #[error("invalid {field} address {address:?}; write it as local-part@domain")]
    InvalidAddress { field: &'static str, address: String },
    #[error("invalid extra header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("the bulk template is not a message: {reason}")]
    InvalidTemplate { reason: String },
    #[error("failed to write the message: {0}")]
    Write(#[from] std::io::Error),
}

/// Composes a control message: a plain-text UTF-8 body with From, To,
/// Subject, Date, Message-ID, MIME-Version, the tracking header and the
/// extra headers. Placeholders in `subject` and `body` are filled from `ctx`.
pub fn compose_control(ctx: &ComposeContext, subject: &str, body: &str) -> Result<Vec<u8>, ComposeError> {
    let subject = ctx.fill("subject", subject)?;
    let body = ctx.fill("body", body)?;
    let message_id = ctx.message_id()?;
    check_address("To", &ctx.to)?;
    for (name, value) in &ctx.extra_headers {
        check_extra_header(name, value)?;
    }

    let from = match &ctx.from_name {
        Some(name) => Address::new_address(Some(name.as_str()), ctx.from_address.as_str()),
        None => Address::new_address(None::<&str>, ctx.from_address.as_str()),
    };
    let mut builder = MessageBuilder::new()
        .from(from)
        .to(ctx.to.as_str())
        .subject(subject)
        .date(ctx.time.timestamp())
        .message_id(message_id)
        .header(TOKEN_HEADER, Raw::new(ctx.token.as_str()));
    for (name, value) in &ctx.extra_headers {
        builder = if value.is_ascii() {
            builder.header(name.as_str(), Raw::new(value.as_str()))
        } else {
            builder.header(name.as_str(), Text::new(value.as_str()))
        };
    }

    // mail-builder picks 7bit, quoted-printable or base64 for the text part
    // from its content and writes CRLF line endings.
    Ok(builder.text_body(body).write_to_vec()?)
}

/// Composes a bulk copy from a sender's template (an RFC 5322 message).
///
/// Header fields and body stay byte for byte after line endings are
/// normalised to CRLF, with these exceptions. Signatures, trace fields and
/// any earlier tracking header are removed, every instance with its
/// continuation lines. To, Date and Message-ID are replaced in place, or
/// added when missing. Placeholders in Subject are filled. The tracking
/// header and extra headers are appended and replace template fields of the
/// same names.
pub fn compose_bulk(ctx: &ComposeContext, template: &[u8]) -> Result<Vec<u8>, ComposeError> {
    let message = normalize_line_endings(template);
    let (header_block, body) = split_header(&message)?;
    let fields = header_fields(header_block)?;
    if !fields.iter().any(|field| field.is("From")) {
        return Err(ComposeError::InvalidTemplate { reason: "it has no From header".to_owned() });
    }
    check_address("To", &ctx.to)?;
    for (name, value) in &ctx.extra_headers {
        check_extra_header(name, value)?;
    }

    let replacements = [
        ("To", format!("To: <{}>\r\n", ctx.to)),
        ("Date", format!("Date: {}\r\n", ctx.date())),
        ("Message-ID", format!("Message-ID: <{}>\r\n", ctx.message_id()?)),
    ];
    let mut replaced = [false; 3];
    let mut output = Vec::with_capacity(message.len() + 512);

    for field in &fields {
        if STRIPPED_HEADERS.iter().any(|name| field.is(name))
            || ctx.extra_headers.iter().any(|(name, _)| field.is(name))
        {
            continue;
        }
        if let Some(index) = replacements.iter().position(|(name, _)| field.is(name)) {
            // Only the first instance is replaced; later duplicates go.
            if !replaced[index] {
                output.extend_from_slice(replacements[index].1.as_bytes());
                replaced[index] = true;
            }
            continue;
        }
        if field.is("Subject") {
            output.extend_from_slice(&fill_subject(ctx, field.raw)?);
            continue;
        }
        output.extend_from_slice(field.raw);
    }

    for (index, (_, line)) in replacements.iter().enumerate() {
        if !replaced[index] {
            output.extend_from_slice(line.as_bytes());
        }
    }
    output.extend_from_slice(format!("{TOKEN_HEADER}: {}\r\n", ctx.token).as_bytes());
    for (name, value) in &ctx.extra_headers {
        write_header(&mut output, name, value)?;
    }

    output.extend_from_slice(b"\r\n");
    output.extend_from_slice(body);
    Ok(output)
}

/// One header field with its continuation lines and final CRLF.
struct HeaderField<'a> {
    name: &'a str,
    raw: &'a [u8],
}

impl HeaderField<'_> {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Converts every bare LF and bare CR to CRLF.
fn normalize_line_endings(input: &[u8]) -> Cow<'_, [u8]> {
    let needs_change = input.iter().enumerate().any(|(index, &byte)| match byte {
        b'\n' => index == 0 || input[index - 1] != b'\r',
        b'\r' => input.get(index + 1) != Some(&b'\n'),
        _ => false,
    });
    if !needs_change {
        return Cow::Borrowed(input);
    }

    let mut output = Vec::with_capacity(input.len() + input.len() / 32);
    let mut index = 0;
    while index < input.len() {
        match input[index] {
            b'\r' if input.get(index + 1) == Some(&b'\n') => {
                output.extend_from_slice(b"\r\n");
                index += 2;
                continue;
            }
            b'\r' | b'\n' => output.extend_from_slice(b"\r\n"),
            byte => output.push(byte),
        }
        index += 1;
    }
    Cow::Owned(output)
}

/// Splits a CRLF message at the empty line. The header block keeps the CRLF
/// of its last field.
fn split_header(message: &[u8]) -> Result<(&[u8], &[u8]), ComposeError> {
    if message.starts_with(b"\r\n") {
        return Err(ComposeError::InvalidTemplate {
            reason: "it starts with an empty line, so it has no header fields".to_owned(),
        });
    }
    let Some(position) = message.windows(4).position(|window| window == b"\r\n\r\n") else {
        return Err(ComposeError::InvalidTemplate {
            reason: "it has no empty line between the header and the body".to_owned(),
        });
    };
    Ok((&message[..position + 2], &message[position + 4..]))
}

/// Splits the header block into fields; a line starting with a space or a
/// tab continues the field before it (RFC 5322 section 2.2.3).
fn header_fields(block: &[u8]) -> Result<Vec<HeaderField<'_>>, ComposeError> {
    // Each field as the name and the byte range of its lines.
    let mut ranges: Vec<(&str, usize, usize)> = Vec::new();
    let mut start = 0;
    let mut line_number = 0;

    while start < block.len() {
        line_number += 1;
        let end = block[start..]
            .windows(2)
            .position(|window| window == b"\r\n")
            .map_or(block.len(), |offset| start + offset + 2);
        let line = &block[start..end];

        if matches!(line.first(), Some(b' ' | b'\t')) {
            let Some(field) = ranges.last_mut() else {
                return Err(ComposeError::InvalidTemplate {
                    reason: "its first header line is a continuation line".to_owned(),
                });
            };
            field.2 = end;
        } else {
            let name = line
                .iter()
                .position(|&byte| byte == b':')
                .map(|colon| &line[..colon])
                .filter(|name| !name.is_empty() && name.iter().all(|&byte| (33..=126).contains(&byte)))
                .and_then(|name| std::str::from_utf8(name).ok());
            let Some(name) = name else {
                return Err(ComposeError::InvalidTemplate {
                    reason: format!("header line {line_number} is not a header field (name: value)"),
                });
            };
            ranges.push((name, start, end));
        }
        start = end;
    }

    Ok(ranges.into_iter().map(|(name, start, end)| HeaderField { name, raw: &block[start..end] }).collect())
}

/// Fills placeholders in a raw Subject field, keeping its folding.
fn fill_subject(ctx: &ComposeContext, raw: &[u8]) -> Result<Vec<u8>, ComposeError> {
    match std::str::from_utf8(raw) {
        Ok(text) => Ok(ctx.fill("subject", text)?.into_bytes()),
        // A subject in a legacy 8-bit charset has no placeholders to fill.
        Err(_) => Ok(raw.to_vec()),
    }
}

/// Writes one header field, RFC 2047-encoding a non-ASCII value.
fn write_header(output: &mut Vec<u8>, name: &str, value: &str) -> Result<(), ComposeError> {
    output.extend_from_slice(name.as_bytes());
    output.extend_from_slice(b": ");
    if value.is_ascii() {
        output.extend_from_slice(value.as_bytes());
        output.extend_from_slice(b"\r\n");
    } else {
        Text::new(value).write_header(&mut *output, name.len() + 2)?;
    }
    Ok(())
}

fn check_address(field: &'static str, address: &str) -> Result<(), ComposeError> {
    let valid = match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !address
                    .contains(|character: char| character.is_whitespace() || matches!(character, '<' | '>' | ','))
        }
        None => false,
    };
    if valid { Ok(()) } else { Err(ComposeError::InvalidAddress { field, address: address.to_owned() }) }
}

fn check_extra_header(name: &str, value: &str) -> Result<(), ComposeError> {
    let invalid = |reason: &str| ComposeError::InvalidHeader { name: name.to_owned(), reason: reason.to_owned() };
    if name.is_empty() || !name.bytes().all(|byte| (33..=126).contains(&byte) && byte != b':') {
        return Err(invalid("a header name is printable ASCII without spaces or ':'"));
    }
    if value.contains(['\r', '\n']) {
        return Err(invalid("the value contains a line break"));
    }
    Ok(())
}
