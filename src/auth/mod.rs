//! What the receiver computed, read from the headers of a delivered copy.
//!
//! The parsers here are pure: they take header values as text and never touch
//! the network.
//!
//! - `results`: Authentication-Results (RFC 8601) and its ARC form (RFC 8617).
//! - `received_spf`: Received-SPF (RFC 7208).
//! - `received`: the Received trace fields (RFC 5321) and the gateway's hop.
//! - `proofpoint`: the X-Proofpoint-* fields.
//! - `select`: the Authentication-Results field that the receiving gateway
//!   added, rather than one the sender could have written.

pub mod keywords;
mod lexer;
pub mod proofpoint;
pub mod received;
pub mod received_spf;
pub mod results;
pub mod select;

pub use proofpoint::{ProofpointHeaders, parse_proofpoint_headers};
pub use received::{Hop, Received, gateway_hop, message_date, parse_received};
pub use received_spf::parse_received_spf;
pub use results::{AuthenticationResults, MethodResult, ParseError, Property, parse_authentication_results};
pub use select::{TrustedIds, receiver_results, receiver_results_all};

/// Splits the header section of a message into its fields, in message order
/// (top first), keeping every instance of a repeated field.
///
/// Each value is the raw text after the colon: leading blanks and the final
/// line break are removed, and the folds stay in place, so [`unfold`] gives
/// the logical line. The section ends at the first empty line or at the end
/// of `raw`. Bytes that are not UTF-8 are replaced with U+FFFD rather than
/// dropping the field, because a trace field with one Latin-1 byte still
/// names its hosts. A line that is neither a field nor a continuation (an
/// mbox `From ` line) is skipped.
pub fn parse_message_headers(raw: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;

    for line in header_lines(raw) {
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);

        // A line that starts with a blank continues the field above it.
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = current.as_mut() {
                value.push_str("\r\n");
                value.push_str(&text);
            }
            continue;
        }

        if let Some(field) = current.take() {
            fields.push(field);
        }
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(' ') {
                let value = value.trim_start_matches([' ', '\t']);
                current = Some((name.to_string(), value.to_string()));
            }
        }
    }
    if let Some(field) = current {
        fields.push(field);
    }

    fields
}

/// Yields the lines of `raw` without their CRLF or bare LF endings.
fn header_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|&byte| byte == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Removes the line breaks of folded header text (RFC 5322 section 2.2.3),
/// keeping the blank that starts each continuation line.
pub fn unfold(value: &str) -> String {
    value.replace("\r\n", "").replace('\n', "")
}

#[cfg(test)]
mod tests;
