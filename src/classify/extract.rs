//! Pulling facts out of reply text: the text rules match on, the first URL
//! and the IP address the reply names.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::smtp::record::Reply;

static SPLIT_URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\b(https?):\s+//").unwrap());
static URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"(?i)\bhttps?://[^\s<>"']+"#).unwrap());
static IP_PARAMETER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)[?&;]ip=([0-9a-f:.]+)").unwrap());

/// Returns the reply text that rules match on: every line without its
/// codes, joined by single spaces, with a URL that a line break split
/// (`https:` at a line end, `//host/...` on the next line) joined again.
pub(super) fn reply_text(reply: &Reply) -> String {
    let joined = reply.text();
    let rejoined = SPLIT_URL.replace_all(&joined, "$1://");
    rejoined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Returns the first URL in the text, without trailing punctuation: a full
/// stop, a comma, a colon (as in `?ip=192.0.2.1: user@example.com`) or a
/// closing bracket that the URL did not open.
pub(super) fn first_url(text: &str) -> Option<String> {
    let found = URL.find(text)?;
    let url = trim_url(found.as_str());
    (url.len() > "http://".len()).then(|| url.to_owned())
}

fn trim_url(mut url: &str) -> &str {
    loop {
        let Some(last) = url.chars().last() else {
            return url;
        };
        let unbalanced = |open: char, close: char| url.matches(close).count() > url.matches(open).count();
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '>' => true,
            ')' => unbalanced('(', ')'),
            ']' => unbalanced('[', ']'),
            _ => false,
        };
        if !trim {
            return url;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
}

/// Finds the IP address the reply names.
///
/// An `ip=` parameter in a URL wins, because lookup links carry the address
/// the receiver judged. Otherwise the first address outside any URL is
/// taken. Placeholders such as `x.xx.xx.xx` or `a.b.c.d` do not parse as
/// addresses, and the unspecified address is ignored.
pub(super) fn named_ip(text: &str) -> Option<IpAddr> {
    let from_parameter =
        IP_PARAMETER.captures_iter(text).find_map(|captures| parse_ip(captures[1].trim_end_matches(['.', ':'])));
    if from_parameter.is_some() {
        return from_parameter;
    }

    let urls: Vec<Range<usize>> = URL.find_iter(text).map(|found| found.range()).collect();
    address_candidates(text)
        .filter(|range| !urls.iter().any(|url| url.start <= range.start && range.end <= url.end))
        .filter(|range| !is_yahoo_status(text, range))
        .find_map(|range| parse_ip(&text[range.clone()]).or_else(|| parse_ipv4_with_port(&text[range])))
}

/// Reads `192.0.2.1:25`, an IPv4 address followed by a port.
fn parse_ipv4_with_port(candidate: &str) -> Option<IpAddr> {
    let (address, port) = candidate.split_once(':')?;
    port.parse::<u16>().ok()?;
    let ip: std::net::Ipv4Addr = address.parse().ok()?;
    Some(IpAddr::V4(ip))
}

fn parse_ip(candidate: &str) -> Option<IpAddr> {
    let ip: IpAddr = candidate.parse().ok()?;
    (!ip.is_unspecified()).then_some(ip)
}

/// Yields the byte ranges of runs of hex digits, dots and colons that stand
/// alone (no letter, digit, `_` or `-` touching them), trailing dots and
/// colons removed.
fn address_candidates(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let is_run_byte = |byte: u8| byte.is_ascii_hexdigit() || byte == b'.' || byte == b':';
    let is_word_byte = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';

    let mut start = 0;
    std::iter::from_fn(move || {
        while start < bytes.len() {
            if !is_run_byte(bytes[start]) {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < bytes.len() && is_run_byte(bytes[end]) {
                end += 1;
            }
            let run_start = start;
            start = end;

            let mut trimmed_end = end;
            while trimmed_end > run_start && matches!(bytes[trimmed_end - 1], b'.' | b':') {
                trimmed_end -= 1;
            }
            let touches_word = (run_start > 0 && is_word_byte(bytes[run_start - 1]))
                || (end < bytes.len() && is_word_byte(bytes[end]));
            if trimmed_end > run_start && !touches_word {
                return Some(run_start..trimmed_end);
            }
        }
        None
    })
}

/// Tells whether a candidate is Yahoo's internal status (`- 4.16.55.1;`),
/// which has the shape of an IPv4 address.
// NOTE: a real address in 4.16.0.0/16 or 5.16.0.0/16 written after "- " is
// skipped too; no provider is known to name the client IP that way.
fn is_yahoo_status(text: &str, range: &Range<usize>) -> bool {
    let candidate = &text[range.clone()];
    let before = &text[..range.start];
    before.ends_with("- ") && (candidate.starts_with("4.16.") || candidate.starts_with("5.16."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keeps_square_brackets_it_opened() {
        let text = "see https://www.spamhaus.org/query/ip/[203.0.113.53] (AS16012611)";
        assert_eq!(first_url(text).as_deref(), Some("https://www.spamhaus.org/query/ip/[203.0.113.53]"));
    }

    #[test]
    fn url_drops_colon_before_recipient() {
        let text = "see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=198.51.100.26: user@me.com";
        assert_eq!(
            first_url(text).as_deref(),
            Some("https://support.proofpoint.com/dnsbl-lookup.cgi?ip=198.51.100.26")
        );
    }

    #[test]
    fn url_drops_closing_parenthesis_it_did_not_open() {
        let text = "(Visit http://csi.cloudmark.com/reset-request/)";
        assert_eq!(first_url(text).as_deref(), Some("http://csi.cloudmark.com/reset-request/"));
    }

    #[test]
    fn url_split_by_line_break_is_rejoined() {
        let reply = Reply::parse_text("550-5.1.0 listed, see https:\n550 5.1.0 //www.spamhaus.org/query/lookup/ ;id=1");
        let text = reply_text(&reply);
        assert_eq!(first_url(&text).as_deref(), Some("https://www.spamhaus.org/query/lookup/"));
    }

    #[test]
    fn ip_placeholders_are_not_addresses() {
        assert_eq!(named_ip("client [x.xx.xx.xx] blocked, from a.b.c.d"), None);
    }

    #[test]
    fn ip_yahoo_status_is_not_an_address() {
        assert_eq!(named_ip("Messages from a.b.c.d deferred - 4.16.55.1; see"), None);
    }

    #[test]
    fn ip_parameter_wins_over_text() {
        let text = "Client host [192.0.2.7] listed; http://example.net/q?r=1&ip=198.51.100.91";
        assert_eq!(named_ip(text), Some("198.51.100.91".parse().unwrap()));
    }

    #[test]
    fn ip_in_url_path_is_ignored() {
        let text = "Client host [203.0.113.100] blocked; https://www.spamhaus.org/returnc/pub/203.0.113.0";
        assert_eq!(named_ip(text), Some("203.0.113.100".parse().unwrap()));
    }

    #[test]
    fn ip_followed_by_port() {
        assert_eq!(named_ip("[198.51.100.92]:46615 is listed"), Some("198.51.100.92".parse().unwrap()));
    }

    #[test]
    fn ipv6_in_brackets() {
        assert_eq!(named_ip("550-5.7.1 [2001:db8::25] Our system"), Some("2001:db8::25".parse().unwrap()));
    }

    #[test]
    fn timestamps_are_not_addresses() {
        assert_eq!(named_ip("[SRV.prod.outlook.com 2024-05-09T23:34:45.000Z ID]"), None);
    }
}
