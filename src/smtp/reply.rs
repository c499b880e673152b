//! Reading SMTP replies: from the wire, where RFC 5321 section 4.2 fixes the
//! form, and from text a user pasted or a log kept, where it does not.
//!
//! The enhanced status code (RFC 3463) is kept as written: `4.7.650` stays
//! `4.7.650`, because providers put their meaning in codes that do not fit a
//! byte.

use thiserror::Error;

use super::record::{Outcome, Reply};

/// The reason lines read from the wire do not form one SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    #[error("empty reply: no lines were read")]
    Empty,
    #[error("reply line {line:?} is shorter than a three-digit reply code")]
    TooShort { line: String },
    #[error("reply line {line:?} does not start with a three-digit reply code from 200 to 599")]
    InvalidCode { line: String },
    #[error("reply line {line:?} has {found:?} after the reply code, not '-', ' ' or the end of the line")]
    InvalidSeparator { line: String, found: char },
    #[error("reply line {line:?} carries code {found}, but the reply began with {expected}")]
    MismatchedCode { line: String, expected: u16, found: u16 },
    #[error("reply line {line:?} ends the reply, but more lines follow it")]
    EndBeforeLastLine { line: String },
    #[error("reply line {line:?} announces a continuation, but no line follows it")]
    MissingLastLine { line: String },
}

/// The class of a reply, from the first digit of its code (RFC 5321 section
/// 4.2.1) or, when the text has no code, from the class of its enhanced code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyClass {
    /// 2yz: the requested action was completed.
    PositiveCompletion,
    /// 3yz: the command was accepted and the server waits for more (354 after DATA).
    PositiveIntermediate,
    /// 4yz: the command was not accepted, but the error is temporary.
    TransientNegative,
    /// 5yz: the command was not accepted and repeating it will not help.
    PermanentNegative,
}

impl ReplyClass {
    fn from_digit(digit: u16) -> Option<Self> {
        match digit {
            2 => Some(Self::PositiveCompletion),
            3 => Some(Self::PositiveIntermediate),
            4 => Some(Self::TransientNegative),
            5 => Some(Self::PermanentNegative),
            _ => None,
        }
    }
}

impl Reply {
    /// Parses the lines of one reply as read from the wire, without their CRLF.
    ///
    /// Every line must start with the same three-digit code. All lines but
    /// the last have `-` after the code; the last has a space or ends there.
    pub fn parse_lines(lines: &[String]) -> Result<Reply, ReplyError> {
        let (last, earlier) = lines.split_last().ok_or(ReplyError::Empty)?;

        let mut expected = None;
        for (index, line) in lines.iter().enumerate() {
            let (code, separator) = wire_prefix(line)?;
            if let Some(expected) = expected
                && code != expected
            {
                return Err(ReplyError::MismatchedCode { line: line.clone(), expected, found: code });
            }
            expected = Some(code);

            let is_last = index == earlier.len();
            match (separator, is_last) {
                (Some('-'), false) | (None | Some(' '), true) => {}
                (Some('-'), true) => {
                    return Err(ReplyError::MissingLastLine { line: last.clone() });
                }
                (None | Some(' '), false) => {
                    return Err(ReplyError::EndBeforeLastLine { line: line.clone() });
                }
                (Some(found), _) => {
                    return Err(ReplyError::InvalidSeparator { line: line.clone(), found });
                }
            }
        }

        let enhanced = find_enhanced_code(line_text(&lines[0]));
        Ok(Reply { code: expected, enhanced, lines: lines.to_vec() })
    }

    /// Parses a reply as a user pasted it or a log kept it, which never fails.
    ///
    /// The text may lack the reply code (`4.7.32 This mail ...`), have empty
    /// continuation lines, or carry redacted enhanced codes (`x.x.xx`) on
    /// later lines. The reply code is the one on the last line that has one,
    /// because a banner such as `220-...` followed by `521 ...` is decided by
    /// its last line. The enhanced code is read from the first line with that
    /// code which carries a well-formed one.
    pub fn parse_text(text: &str) -> Reply {
        let lines: Vec<String> = text
            .lines()
            .map(|line| line.trim_end_matches('\r').to_owned())
            .skip_while(|line| line.trim().is_empty())
            .collect();
        let lines = trim_trailing_blank_lines(lines);

        let code = lines.iter().rev().find_map(|line| text_code(line));
        let enhanced =
            lines.iter().filter(|line| text_code(line) == code).find_map(|line| find_enhanced_code(line_text(line)));

        Reply { code, enhanced, lines }
    }

    /// Returns the human text of the reply: every line without its reply code
    /// and leading enhanced code, trimmed, joined with single spaces.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        for line in &self.lines {
            let rest = line_text(line);
            let rest = match enhanced_shaped_prefix(rest) {
                Some(len) => &rest[len..],
                None => rest,
            };
            let rest = rest.trim();
            if !rest.is_empty() {
                parts.push(rest);
            }
        }
        parts.join(" ")
    }

    /// Returns the class from the code's first digit, or from the enhanced
    /// code's class when the reply has no code. It is `None` without either.
    pub fn class(&self) -> Option<ReplyClass> {
        if let Some(code) = self.code {
            return ReplyClass::from_digit(code / 100);
        }
        let enhanced = self.enhanced.as_deref()?;
        let digit = enhanced.split('.').next()?.parse().ok()?;
        ReplyClass::from_digit(digit)
    }

    /// Reads the reply as an attempt outcome: 2 accepted, 4 deferred, 5
    /// rejected. A 3yz reply or one without any code has no such reading.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.class()? {
            ReplyClass::PositiveCompletion => Some(Outcome::Accepted),
            ReplyClass::PositiveIntermediate => None,
            ReplyClass::TransientNegative => Some(Outcome::Deferred),
            ReplyClass::PermanentNegative => Some(Outcome::Rejected),
        }
    }

    pub fn is_positive(&self) -> bool {
        matches!(self.class(), Some(ReplyClass::PositiveCompletion | ReplyClass::PositiveIntermediate))
    }

    pub fn is_transient(&self) -> bool {
        self.class() == Some(ReplyClass::TransientNegative)
    }

    pub fn is_permanent(&self) -> bool {
        self.class() == Some(ReplyClass::PermanentNegative)
    }
}

/// Splits a wire line into its reply code and the character after it.
fn wire_prefix(line: &str) -> Result<(u16, Option<char>), ReplyError> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 {
        return Err(ReplyError::TooShort { line: line.to_owned() });
    }
    let code = parse_code(&bytes[..3]).ok_or_else(|| ReplyError::InvalidCode { line: line.to_owned() })?;
    let separator = line[3..].chars().next();
    Ok((code, separator))
}

/// Reads a three-digit reply code whose first digit is 2 to 5. RFC 5321
/// limits the second digit to 0-5, but servers send codes such as 571, so
/// any second and third digit is taken.
fn parse_code(digits: &[u8]) -> Option<u16> {
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let value = digits.iter().fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'));
    Some(value)
}

/// Reads the reply code of a line of pasted text: three digits followed by a
/// space, a hyphen or the end of the line.
fn text_code(line: &str) -> Option<u16> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 {
        return None;
    }
    match bytes.get(3) {
        None | Some(b' ' | b'-') => parse_code(&bytes[..3]),
        Some(_) => None,
    }
}

/// Returns what follows the reply code and its separator, or the whole line
/// when it has no code.
fn line_text(line: &str) -> &str {
    match text_code(line) {
        Some(_) if line.len() > 3 => &line[4..],
        Some(_) => "",
        None => line,
    }
}

/// Finds an enhanced status code at the start of a line's text. One word may
/// come before it, as in `cuda_nsu 4.7.1`, if that word has only letters,
/// digits, `_` and `-`. A bracketed tag or a sentence does not qualify.
fn find_enhanced_code(text: &str) -> Option<String> {
    let mut words = text.split_ascii_whitespace();
    let first = words.next()?;
    if let Some(code) = enhanced_code(first) {
        return Some(code);
    }

    let is_plain_word = first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !is_plain_word {
        return None;
    }
    enhanced_code(words.next()?)
}

/// Reads one word as an enhanced status code (RFC 3463 section 2):
/// `class.subject.detail`, class 2, 4 or 5, subject and detail of one to
/// three digits. A leading `#`, which some gateways write, is dropped.
fn enhanced_code(word: &str) -> Option<String> {
    let word = word.strip_prefix('#').unwrap_or(word);
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    if parts.next().is_some() {
        return None;
    }

    let is_number = |part: &str| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    if !matches!(class, "2" | "4" | "5") || !is_number(subject) || !is_number(detail) {
        return None;
    }
    Some(word.to_owned())
}

/// Returns the length of a leading token shaped like an enhanced code, the
/// redacted forms `x.x.xx` and `#.#.#` included, with the space after it.
fn enhanced_shaped_prefix(text: &str) -> Option<usize> {
    let token_len = text.find(' ').unwrap_or(text.len());
    let token = &text[..token_len];
    let token = token.strip_prefix('#').unwrap_or(token);

    let parts: Vec<&str> = token.split('.').collect();
    let is_shaped = parts.len() == 3
        && parts.iter().all(|part| {
            (1..=3).contains(&part.len()) && part.chars().all(|c| c.is_ascii_digit() || matches!(c, 'x' | 'X' | '#'))
        });
    if !is_shaped {
        return None;
    }
    Some((token_len + 1).min(text.len()))
}

fn trim_trailing_blank_lines(mut lines: Vec<String>) -> Vec<String> {
    while lines.last().is_some_and(|line| line.trim().is_empty()) {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(lines: &[&str]) -> Result<Reply, ReplyError> {
        let lines: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
        Reply::parse_lines(&lines)
    }

    #[test]
    fn wire_multi_line_reply() {
        let reply = wire(&["250-mx.example.com", "250-PIPELINING", "250 8BITMIME"]).unwrap();
        assert_eq!(reply.code, Some(250));
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.lines.len(), 3);
        assert_eq!(reply.text(), "mx.example.com PIPELINING 8BITMIME");
    }

    #[test]
    fn wire_enhanced_code_kept_whole() {
        let reply = wire(&[
            "451-4.7.650 The mail server [192.0.2.25] has been",
            "451 4.7.650 temporarily rate limited due to IP reputation.",
        ])
        .unwrap();
        assert_eq!(reply.code, Some(451));
        assert_eq!(reply.enhanced.as_deref(), Some("4.7.650"));
        assert_eq!(
            reply.text(),
            "The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation."
        );
        assert!(reply.is_transient());
        assert!(!reply.is_permanent());
        assert_eq!(reply.outcome(), Some(Outcome::Deferred));
    }

    #[test]
    fn wire_mismatched_codes_rejected() {
        let error = wire(&["220-mx.example.com ESMTP", "521 5.7.1 blocked"]).unwrap_err();
        assert_eq!(
            error,
            ReplyError::MismatchedCode { line: "521 5.7.1 blocked".to_owned(), expected: 220, found: 521 }
        );
    }

    #[test]
    fn wire_line_too_short() {
        let error = wire(&["25"]).unwrap_err();
        assert_eq!(error, ReplyError::TooShort { line: "25".to_owned() });
    }

    #[test]
    fn wire_line_without_code() {
        let error = wire(&["HELLO there"]).unwrap_err();
        assert!(matches!(error, ReplyError::InvalidCode { .. }), "{error:?}");
    }

    #[test]
    fn wire_code_out_of_range() {
        let error = wire(&["199 what"]).unwrap_err();
        assert!(matches!(error, ReplyError::InvalidCode { .. }), "{error:?}");
    }

    #[test]
    fn wire_reply_without_text() {
        let reply = wire(&["250"]).unwrap();
        assert_eq!(reply.code, Some(250));
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.text(), "");
        assert_eq!(reply.class(), Some(ReplyClass::PositiveCompletion));
    }

    #[test]
    fn wire_reply_with_bare_space() {
        let reply = wire(&["354 "]).unwrap();
        assert_eq!(reply.code, Some(354));
        assert_eq!(reply.class(), Some(ReplyClass::PositiveIntermediate));
        assert_eq!(reply.outcome(), None);
    }

    #[test]
    fn wire_last_line_still_continued() {
        let error = wire(&["250-mx.example.com", "250-SIZE"]).unwrap_err();
        assert!(matches!(error, ReplyError::MissingLastLine { .. }), "{error:?}");
    }

    #[test]
    fn wire_end_marker_before_last_line() {
        let error = wire(&["250 mx.example.com", "250 SIZE"]).unwrap_err();
        assert!(matches!(error, ReplyError::EndBeforeLastLine { .. }), "{error:?}");
    }

    #[test]
    fn wire_invalid_separator() {
        let error = wire(&["250/ok"]).unwrap_err();
        assert_eq!(error, ReplyError::InvalidSeparator { line: "250/ok".to_owned(), found: '/' });
    }

    #[test]
    fn wire_empty_input() {
        assert_eq!(wire(&[]).unwrap_err(), ReplyError::Empty);
    }

    #[test]
    fn wire_ip_address_is_not_an_enhanced_code() {
        let reply = wire(&["554 198.51.100.5 rejected"]).unwrap();
        assert_eq!(reply.enhanced, None);
    }

    #[test]
    fn text_without_code_takes_enhanced_class() {
        let reply = Reply::parse_text("4.7.32 This mail has been rate limited");
        assert_eq!(reply.code, None);
        assert_eq!(reply.class(), Some(ReplyClass::TransientNegative));
        assert_eq!(reply.text(), "This mail has been rate limited");
    }

    #[test]
    fn text_drops_redacted_enhanced_codes() {
        let reply = Reply::parse_text("421-4.7.28 first\n421-x.x.xx second\n421 x.x.xx third");
        assert_eq!(reply.enhanced.as_deref(), Some("4.7.28"));
        assert_eq!(reply.text(), "first second third");
    }

    #[test]
    fn text_without_any_code_has_no_class() {
        let reply = Reply::parse_text("You are greylisted for 20 minutes.");
        assert_eq!(reply.class(), None);
        assert_eq!(reply.outcome(), None);
        assert_eq!(reply.text(), "You are greylisted for 20 minutes.");
    }
}
