//! Received-SPF header values (RFC 7208 section 9.1): a result, an optional
//! comment, then `key=value` pairs such as `client-ip`, `envelope-from` and
//! `helo`.

use super::lexer::{self, Mode, Token};
use super::results::{Cursor, MethodResult, ParseError, Property, normalize_spf_result, read_properties};

/// Parses a Received-SPF value into an `spf` result.
///
/// The result keyword is lowercased (`None` becomes `none`), the comment is
/// the one right after it, and every `key=value` pair becomes a property
/// without a ptype, whether the pairs are separated by `;` or by blanks.
pub fn parse_received_spf(value: &str) -> Result<MethodResult, ParseError> {
    if value.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let tokens: Vec<_> = lexer::tokenize(value, Mode::KeyValue)
        .into_iter()
        .filter(|spanned| spanned.token != Token::Semicolon)
        .collect();

    let result = match tokens.first().map(|spanned| &spanned.token) {
        Some(Token::Word(word)) if word.chars().all(|c| c.is_ascii_alphanumeric()) => word.to_ascii_lowercase(),
        _ => return Err(ParseError::NoResults(super::unfold(value.trim()))),
    };
    let comment = match tokens.get(1).map(|spanned| &spanned.token) {
        Some(Token::Comment(text)) => Some(text.clone()),
        _ => None,
    };

    let mut parsed = MethodResult {
        method: "spf".to_string(),
        normalized: normalize_spf_result(&result),
        result,
        reason: None,
        comment,
        props: Vec::new(),
    };
    let mut cursor = Cursor { tokens: &tokens, position: 1 };
    read_properties(&mut cursor, |key, value| {
        parsed.props.push(Property { ptype: None, property: key.to_ascii_lowercase(), value });
    });

    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_quoted_value_and_trailing_semicolon() {
        let parsed = parse_received_spf(
            "pass (mybox.example.org: domain of a@example.com designates 192.0.2.1 as permitted sender)\r\n \
             receiver=mybox.example.org; client-ip=192.0.2.1; envelope-from=\"a@example.com\"; helo=foo.example.com;",
        )
        .unwrap();

        assert_eq!(parsed.result, "pass");
        assert_eq!(parsed.prop("envelope-from"), Some("a@example.com"));
        assert_eq!(parsed.prop("receiver"), Some("mybox.example.org"));
        assert_eq!(parsed.props.len(), 4);
    }

    #[test]
    fn softfail_in_capitals_is_lowercased() {
        let parsed = parse_received_spf("SoftFail (example.net: transitioning domain) client-ip=192.0.2.7;").unwrap();
        assert_eq!(parsed.result, "softfail");
        assert_eq!(parsed.normalized, None);
    }

    #[test]
    fn value_starting_with_comment_is_an_error() {
        assert!(matches!(parse_received_spf("(no result) client-ip=192.0.2.1"), Err(ParseError::NoResults(_))));
    }
}
