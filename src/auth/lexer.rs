//! Tokens of structured header values: atoms, quoted strings, comments and
//! the `=` and `;` separators, with CFWS (RFC 5322 section 3.2.2) removed.

/// One token of a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A run of characters that are not blanks, parentheses, quotes or a
    /// separator of the current [`Mode`].
    Word(String),
    /// A quoted string with its quotes removed and quoted-pairs resolved.
    Quoted(String),
    /// A comment's text without its outer parentheses, unfolded. Nested
    /// comments keep their parentheses.
    Comment(String),
    Equals,
    Semicolon,
}

/// A token and whether blanks or a line break came right before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned {
    pub token: Token,
    pub spaced: bool,
}

/// Which characters end a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `=` and `;` are separators, as in Authentication-Results.
    KeyValue,
    /// `=` belongs to words and only `;` separates, as in Received, whose
    /// clauses are words and comments and whose date follows the last `;`.
    Trace,
}

/// Splits a header value into tokens.
///
/// An unterminated comment or quoted string runs to the end of the value,
/// because truncated header copies are common and their text is still useful.
/// A `)` with no open comment is dropped.
pub(crate) fn tokenize(value: &str, mode: Mode) -> Vec<Spanned> {
    let mut tokens = Vec::new();
    let mut chars = value.chars().peekable();
    let mut spaced = false;

    while let Some(&c) = chars.peek() {
        let token = match c {
            ' ' | '\t' | '\r' | '\n' => {
                chars.next();
                spaced = true;
                continue;
            }
            ')' => {
                chars.next();
                continue;
            }
            '(' => {
                chars.next();
                Token::Comment(read_comment(&mut chars))
            }
            '"' => {
                chars.next();
                Token::Quoted(read_quoted(&mut chars))
            }
            ';' => {
                chars.next();
                Token::Semicolon
            }
            '=' if mode == Mode::KeyValue => {
                chars.next();
                Token::Equals
            }
            _ => Token::Word(read_word(&mut chars, mode)),
        };
        tokens.push(Spanned { token, spaced });
        spaced = false;
    }

    tokens
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn read_word(chars: &mut Chars<'_>, mode: Mode) -> String {
    let mut word = String::new();
    while let Some(&c) = chars.peek() {
        let ends = match c {
            ' ' | '\t' | '\r' | '\n' | '(' | ')' | '"' | ';' => true,
            '=' => mode == Mode::KeyValue,
            _ => false,
        };
        if ends {
            break;
        }
        word.push(c);
        chars.next();
    }
    word
}

/// Reads a comment after its `(`, up to the matching `)`.
fn read_comment(chars: &mut Chars<'_>) -> String {
    let mut text = String::new();
    let mut depth = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    text.push(escaped);
                }
            }
            '(' => {
                depth += 1;
                text.push(c);
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                text.push(c);
            }
            // Unfolding removes the line break and keeps the blank after it.
            '\r' | '\n' => {}
            _ => text.push(c),
        }
    }
    text
}

/// Reads a quoted string after its opening quote.
fn read_quoted(chars: &mut Chars<'_>) -> String {
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    text.push(escaped);
                }
            }
            '"' => break,
            '\r' | '\n' => {}
            _ => text.push(c),
        }
    }
    text
}

/// Splits tokens at each `;`.
pub(crate) fn split_semicolons(tokens: Vec<Spanned>) -> Vec<Vec<Spanned>> {
    let mut segments = vec![Vec::new()];
    for spanned in tokens {
        if spanned.token == Token::Semicolon {
            segments.push(Vec::new());
        } else if let Some(last) = segments.last_mut() {
            last.push(spanned);
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(value: &str) -> Vec<Token> {
        tokenize(value, Mode::KeyValue).into_iter().map(|spanned| spanned.token).collect()
    }

    #[test]
    fn comment_keeps_nested_parentheses() {
        assert_eq!(kinds("(a (b) c)"), [Token::Comment("a (b) c".into())]);
    }

    #[test]
    fn comment_resolves_quoted_pair() {
        assert_eq!(kinds(r"(a \) b)"), [Token::Comment("a ) b".into())]);
    }

    #[test]
    fn unterminated_comment_runs_to_end() {
        assert_eq!(kinds("x (cut; here"), [Token::Word("x".into()), Token::Comment("cut; here".into())]);
    }

    #[test]
    fn quoted_string_resolves_escapes() {
        assert_eq!(kinds(r#""a \"b\"""#), [Token::Quoted(r#"a "b""#.into())]);
    }

    #[test]
    fn folded_comment_keeps_the_continuation_blank() {
        assert_eq!(kinds("(one\r\n two)"), [Token::Comment("one two".into())]);
    }

    #[test]
    fn trace_mode_keeps_equals_in_words() {
        let tokens = tokenize("id a=b; date", Mode::Trace);
        assert_eq!(tokens[1].token, Token::Word("a=b".into()));
    }
}
