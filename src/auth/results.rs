//! Authentication-Results (RFC 8601) and ARC-Authentication-Results
//! (RFC 8617) header values, read as data.
//!
//! Receivers bend the grammar, so the parser accepts what they write: no
//! authserv-id (Microsoft starts with a result), bare domain tokens between
//! results, no blank after `;`, comments glued to a result, key=value pairs
//! without a ptype, trailing words after the last property, non-standard
//! result keywords, and values cut off mid-comment.

use serde::{Deserialize, Serialize};

use super::lexer::{self, Mode, Spanned, Token};

/// One parsed Authentication-Results or ARC-Authentication-Results value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationResults {
    /// The host or domain that computed the results, absent when the writer
    /// left it out.
    pub authserv_id: Option<String>,
    /// The number after the authserv-id (`mx.microsoft.com 1`).
    pub version: Option<u32>,
    /// The ARC instance (`i=`), present only on ARC-Authentication-Results.
    pub instance: Option<u32>,
    pub results: Vec<MethodResult>,
    /// True for the `none` form, which states that no method ran.
    pub none: bool,
    /// `;`-separated parts that are not results, unfolded and trimmed, such
    /// as the `outlook.com` tokens that Microsoft writes between results.
    pub ignored: Vec<String>,
}

impl AuthenticationResults {
    /// Returns the results of one method (`spf`, `dkim`, ...) in header order;
    /// DKIM has one per signature.
    pub fn method<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a MethodResult> + 'a {
        self.results.iter().filter(move |result| result.method_name() == method)
    }
}

/// One `method=result` entry with its reason, comment and properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method in lower case, with its version when one is given
    /// (`dkim/1`).
    pub method: String,
    /// The result keyword as written, in lower case.
    pub result: String,
    /// The registered result that a non-standard keyword stands for
    /// (`dkim_pass` and `success` mean `pass`). It is absent for a registered
    /// keyword and for one with no known meaning.
    pub normalized: Option<String>,
    /// The value of `reason=`.
    pub reason: Option<String>,
    /// The comment right after the result, unfolded.
    pub comment: Option<String>,
    pub props: Vec<Property>,
}

impl MethodResult {
    /// Returns the method without its version.
    pub fn method_name(&self) -> &str {
        self.method.split('/').next().unwrap_or(&self.method)
    }

    /// Returns the registered result: `normalized` when present, else
    /// `result`.
    pub fn effective_result(&self) -> &str {
        self.normalized.as_deref().unwrap_or(&self.result)
    }

    /// Returns the value of the first property named `key`, written either as
    /// `ptype.property` or as a bare property.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|prop| prop.key() == key).map(|prop| prop.value.as_str())
    }
}

/// One property of a result: `header.d=example.com` has ptype `header`,
/// property `d` and value `example.com`. A pair without a ptype, such as
/// Microsoft's `action=none`, has no ptype.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    /// The property type in lower case (`smtp`, `header`, `body`, `policy`).
    pub ptype: Option<String>,
    /// The property name in lower case.
    pub property: String,
    /// The value as written, with quotes removed.
    pub value: String,
}

impl Property {
    /// Returns `ptype.property`, or the property alone without a ptype.
    pub fn key(&self) -> String {
        match &self.ptype {
            Some(ptype) => format!("{ptype}.{}", self.property),
            None => self.property.clone(),
        }
    }
}

/// The failure to read a header value as results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the header value is empty")]
    Empty,
    #[error("invalid ARC instance {0:?}: expected i= and a number")]
    InvalidInstance(String),
    #[error("no method result and no `none` in {0:?}")]
    NoResults(String),
}

/// Parses an Authentication-Results or ARC-Authentication-Results value.
///
/// `value` is the text after the colon, folded or not. Parts between `;`
/// that are not `method=result` go to [`AuthenticationResults::ignored`].
/// It fails only when the value is empty, has a malformed `i=`, or carries
/// neither a result nor `none`.
pub fn parse_authentication_results(value: &str) -> Result<AuthenticationResults, ParseError> {
    if value.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let mut segments = lexer::split_semicolons(lexer::tokenize(value, Mode::KeyValue)).into_iter().peekable();

    let mut parsed = AuthenticationResults {
        authserv_id: None,
        version: None,
        instance: None,
        results: Vec::new(),
        none: false,
        ignored: Vec::new(),
    };

    // ARC-Authentication-Results starts with `i=N;`. No result method is
    // named `i`, so the prefix is recognized on any header name.
    if let Some(first) = segments.peek()
        && let [Spanned { token: Token::Word(key), .. }, Spanned { token: Token::Equals, .. }, rest @ ..] =
            strip_comments(first).as_slice()
        && key.eq_ignore_ascii_case("i")
    {
        let number = match rest {
            [Spanned { token: Token::Word(number), .. }] => number.parse().ok(),
            _ => None,
        };
        let Some(number) = number else {
            return Err(ParseError::InvalidInstance(lexer_text(first)));
        };
        parsed.instance = Some(number);
        segments.next();
    }

    // The authserv-id segment has no `=`; Microsoft omits it and starts with
    // a result.
    if let Some(first) = segments.peek()
        && !first.iter().any(|spanned| spanned.token == Token::Equals)
    {
        let words = strip_comments(first);
        let mut values = words.iter().filter_map(|spanned| token_value(&spanned.token));
        parsed.authserv_id = values.next().map(str::to_string);
        parsed.version = values.next().and_then(|version| version.parse().ok());
        segments.next();
    }

    for segment in segments {
        let words = strip_comments(&segment);
        if words.is_empty() {
            continue;
        }
        if let [Spanned { token: Token::Word(word), .. }] = words.as_slice()
            && word.eq_ignore_ascii_case("none")
        {
            parsed.none = true;
            continue;
        }
        match parse_result(&segment) {
            Some(result) => parsed.results.push(result),
            None => parsed.ignored.push(lexer_text(&segment)),
        }
    }

    if parsed.results.is_empty() && !parsed.none {
        return Err(ParseError::NoResults(super::unfold(value.trim())));
    }
    Ok(parsed)
}

/// Returns the registered SPF result that a non-standard keyword stands
/// for, as [`MethodResult::normalized`] stores it.
pub(crate) fn normalize_spf_result(result: &str) -> Option<String> {
    normalize_result("spf", result)
}

/// Parses one `method=result [comment] [reason=..] [props]` segment, or
/// returns `None` when the segment does not start with `method=result`.
pub(crate) fn parse_result(segment: &[Spanned]) -> Option<MethodResult> {
    let mut cursor = Cursor { tokens: segment, position: 0 };

    cursor.skip_comments();
    let mut method = cursor.word()?.to_ascii_lowercase();
    // `method [CFWS] "/" [CFWS] version` with blanks around the slash.
    while method.ends_with('/') || cursor.peek_word().is_some_and(|word| word.starts_with('/')) {
        let Some(part) = cursor.word() else { break };
        method.push_str(&part.to_ascii_lowercase());
    }
    if !is_keyword(&method) {
        return None;
    }

    cursor.skip_comments();
    cursor.equals()?;
    cursor.skip_comments();
    let result = cursor.word()?.to_ascii_lowercase();
    if !is_keyword(&result) {
        return None;
    }
    let comment = cursor.comment();

    let mut parsed = MethodResult {
        normalized: normalize_result(&method, &result),
        method,
        result,
        reason: None,
        comment,
        props: Vec::new(),
    };
    read_properties(&mut cursor, |key, value| {
        if key.eq_ignore_ascii_case("reason") {
            parsed.reason = Some(value);
        } else {
            parsed.props.push(property(key, value));
        }
    });

    Some(parsed)
}

/// Reads `key=value` pairs up to the end of the segment, skipping comments
/// and words that are not followed by `=` (a trailing `for user@example.com`,
/// or the `…` of a cut copy).
pub(crate) fn read_properties(cursor: &mut Cursor<'_>, mut each: impl FnMut(&str, String)) {
    while !cursor.at_end() {
        cursor.skip_comments();
        let Some(key) = cursor.word() else {
            cursor.advance();
            continue;
        };
        cursor.skip_comments();
        if cursor.equals().is_none() {
            continue;
        }
        cursor.skip_comments();
        each(&key, cursor.value());
    }
}

fn property(key: &str, value: String) -> Property {
    let key = key.to_ascii_lowercase();
    match key.split_once('.') {
        Some((ptype, property)) => Property { ptype: Some(ptype.to_string()), property: property.to_string(), value },
        None => Property { ptype: None, property: key, value },
    }
}

/// A read position in the tokens of one segment.
pub(crate) struct Cursor<'a> {
    pub tokens: &'a [Spanned],
    pub position: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.position >= self.tokens.len()
    }

    fn advance(&mut self) {
        self.position += 1;
    }

    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.position)
    }

    fn peek_word(&self) -> Option<&str> {
        match &self.peek()?.token {
            Token::Word(word) => Some(word),
            _ => None,
        }
    }

    fn skip_comments(&mut self) {
        while matches!(self.peek(), Some(Spanned { token: Token::Comment(_), .. })) {
            self.advance();
        }
    }

    fn word(&mut self) -> Option<String> {
        let word = self.peek_word()?.to_string();
        self.advance();
        Some(word)
    }

    fn equals(&mut self) -> Option<()> {
        (self.peek()?.token == Token::Equals).then(|| self.advance())
    }

    fn comment(&mut self) -> Option<String> {
        match &self.peek()?.token {
            Token::Comment(text) => {
                let text = text.clone();
                self.advance();
                Some(text)
            }
            _ => None,
        }
    }

    /// Reads a property value: a word, a quoted string, or a quoted
    /// local-part glued to `@domain`. A missing value reads as empty.
    fn value(&mut self) -> String {
        let mut value = match self.peek().map(|spanned| &spanned.token) {
            Some(Token::Word(word)) | Some(Token::Quoted(word)) => word.clone(),
            _ => return String::new(),
        };
        self.advance();
        while let Some(Spanned { token: Token::Word(word) | Token::Quoted(word), spaced: false }) = self.peek() {
            value.push_str(word);
            self.advance();
        }
        value
    }
}

fn strip_comments(segment: &[Spanned]) -> Vec<Spanned> {
    segment.iter().filter(|spanned| !matches!(spanned.token, Token::Comment(_))).cloned().collect()
}

fn token_value(token: &Token) -> Option<&str> {
    match token {
        Token::Word(word) | Token::Quoted(word) => Some(word),
        _ => None,
    }
}

/// Rebuilds readable text from tokens, for [`AuthenticationResults::ignored`]
/// and error messages.
fn lexer_text(segment: &[Spanned]) -> String {
    let mut text = String::new();
    for spanned in segment {
        if spanned.spaced && !text.is_empty() {
            text.push(' ');
        }
        match &spanned.token {
            Token::Word(word) => text.push_str(word),
            Token::Quoted(quoted) => {
                text.push('"');
                text.push_str(quoted);
                text.push('"');
            }
            Token::Comment(comment) => {
                text.push('(');
                text.push_str(comment);
                text.push(')');
            }
            Token::Equals => text.push('='),
            Token::Semicolon => text.push(';'),
        }
    }
    text
}

/// True for an RFC 8601 Keyword as receivers write it: letters, digits and
/// `-`, plus `_` for vendor results (`dkim_pass`) and `/` for a method
/// version (`dkim/1`). A dot is excluded, so a stray `header.from=x` after a
/// misplaced `;` is not taken for a method.
fn is_keyword(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
}

/// The result keywords that the IANA Email Authentication Result Names
/// registry lists for each method (RFC 8601, RFC 8617 for `arc`, RFC 7489
/// for `dmarc`).
fn registered_results(method: &str) -> Option<&'static [&'static str]> {
    let results: &[&str] = match method {
        "spf" | "sender-id" => &["none", "neutral", "pass", "fail", "softfail", "policy", "temperror", "permerror"],
        "dkim" | "domainkeys" => &["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"],
        "dmarc" | "auth" | "rrvs" | "smime" | "vbr" => &["none", "pass", "fail", "temperror", "permerror"],
        "arc" => &["none", "pass", "fail"],
        "iprev" => &["pass", "fail", "temperror", "permerror"],
        "dkim-adsp" => &["none", "pass", "unknown", "fail", "discard", "nxdomain", "temperror", "permerror"],
        "dnswl" => &["pass", "none", "temperror", "permerror"],
        _ => return None,
    };
    Some(results)
}

/// Maps a non-standard result keyword to the registered one it stands for.
///
/// Vendors prefix the method (`dkim_pass`), use other words for pass and
/// fail (`success`, `failed`, `hardfail` from RFC 4408 drafts), or spell the
/// errors apart (`temp_error`). Microsoft's `bestguesspass` means the domain
/// publishes no SPF record, so it maps to `none`, not `pass`. Returns `None`
/// for a registered keyword, for a method outside the registry (Microsoft's
/// `compauth` has its own values), and for a keyword with no known meaning.
fn normalize_result(method: &str, result: &str) -> Option<String> {
    let name = method.split('/').next().unwrap_or(method);
    let registered = registered_results(name)?;
    if registered.contains(&result) {
        return None;
    }

    let bare = result.strip_prefix(name).and_then(|rest| rest.strip_prefix(['_', '-'])).unwrap_or(result);
    let mapped = match bare {
        "success" | "succeeded" | "ok" | "valid" => "pass",
        "failed" | "failure" | "hardfail" | "invalid" => "fail",
        "temp_error" | "temp-error" | "tempfail" | "temp_fail" => "temperror",
        "perm_error" | "perm-error" | "permfail" | "perm_fail" => "permerror",
        "bestguesspass" => "none",
        other => other,
    };

    registered.contains(&mapped).then(|| mapped.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_version_is_kept() {
        let parsed = parse_authentication_results("mx.example.net; dkim/1=pass header.d=example.com").unwrap();
        assert_eq!(parsed.results[0].method, "dkim/1");
        assert_eq!(parsed.results[0].method_name(), "dkim");
    }

    #[test]
    fn quoted_local_part_joins_domain() {
        let parsed =
            parse_authentication_results(r#"mx.example.net; spf=pass smtp.mailfrom="a b"@example.com"#).unwrap();
        assert_eq!(parsed.results[0].prop("smtp.mailfrom"), Some("a b@example.com"));
    }

    #[test]
    fn blanks_around_equals_are_accepted() {
        let parsed = parse_authentication_results("mx.example.net; spf = pass smtp.mailfrom = a@example.com").unwrap();
        assert_eq!(parsed.results[0].result, "pass");
        assert_eq!(parsed.results[0].prop("smtp.mailfrom"), Some("a@example.com"));
    }

    #[test]
    fn comment_before_method_is_skipped() {
        let parsed =
            parse_authentication_results("mx.example.net (v1); (note) dkim=fail (bad sig) reason=\"bad signature\"")
                .unwrap();
        assert_eq!(parsed.authserv_id.as_deref(), Some("mx.example.net"));
        assert_eq!(parsed.results[0].comment.as_deref(), Some("bad sig"));
        assert_eq!(parsed.results[0].reason.as_deref(), Some("bad signature"));
    }

    #[test]
    fn empty_value_is_an_error() {
        assert_eq!(parse_authentication_results(" \r\n "), Err(ParseError::Empty));
    }

    #[test]
    fn authserv_id_alone_is_an_error() {
        assert!(matches!(parse_authentication_results("mx.example.net;"), Err(ParseError::NoResults(_))));
    }

    #[test]
    fn bad_instance_is_an_error() {
        assert!(matches!(
            parse_authentication_results("i=x; mx.example.net; arc=none"),
            Err(ParseError::InvalidInstance(_))
        ));
    }

    #[test]
    fn property_after_stray_semicolon_is_not_a_method() {
        let parsed =
            parse_authentication_results("mx.example.net; dmarc=pass action=none; header.from=example.com").unwrap();
        assert_eq!(parsed.results.len(), 1);
        assert_eq!(parsed.ignored, ["header.from=example.com"]);
    }

    #[test]
    fn microsoft_domain_tokens_are_ignored() {
        let parsed = parse_authentication_results("spf=pass smtp.mailfrom=a.example; outlook.com; dmarc=pass").unwrap();
        assert_eq!(parsed.results.len(), 2);
        assert_eq!(parsed.ignored, ["outlook.com"]);
    }

    #[test]
    fn normalization_maps_vendor_keywords() {
        assert_eq!(normalize_result("spf", "hardfail").as_deref(), Some("fail"));
        assert_eq!(normalize_result("dkim", "dkim_fail").as_deref(), Some("fail"));
        assert_eq!(normalize_result("spf", "bestguesspass").as_deref(), Some("none"));
        assert_eq!(normalize_result("dmarc", "temp_error").as_deref(), Some("temperror"));
    }

    #[test]
    fn normalization_leaves_registered_and_unknown() {
        assert_eq!(normalize_result("spf", "softfail"), None);
        assert_eq!(normalize_result("compauth", "softpass"), None);
        assert_eq!(normalize_result("dkim", "weird"), None);
    }
}
