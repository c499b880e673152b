//! The tracking token that makes each sent message findable in a seed
//! mailbox, by its own header or by its Message-ID.

use std::fmt;

use rand::Rng;

/// Header that carries the tracking token.
pub const TOKEN_HEADER: &str = "X-Mailcanary-Token";

/// Token prefix, so a token is recognisable in a Message-ID.
const PREFIX: &str = "mc";

/// Random characters after the prefix: 24 base32 characters are 120 bits.
const RANDOM_LENGTH: usize = 24;

/// RFC 4648 base32 alphabet in lower case, safe in a Message-ID and a header.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A random token such as `mcq3x7...`, unique per sent message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrackingToken(String);

impl TrackingToken {
    /// Generates a new token from the thread-local random generator.
    pub fn generate() -> TrackingToken {
        let mut rng = rand::rng();
        let random: String =
            (0..RANDOM_LENGTH).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
        TrackingToken(format!("{PREFIX}{random}"))
    }

    /// Parses a token read back from a header or a Message-ID; `None` when
    /// `text` is not one.
    pub fn parse(text: &str) -> Option<TrackingToken> {
        let text = text.trim();
        let random = text.strip_prefix(PREFIX)?;
        let valid = random.len() == RANDOM_LENGTH && random.bytes().all(|byte| ALPHABET.contains(&byte));
        valid.then(|| TrackingToken(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Formats the Message-ID for a message from `from_domain`, without angle
    /// brackets: `TOKEN.mailcanary@FROM-DOMAIN`.
    pub fn message_id(&self, from_domain: &str) -> String {
        format!("{}.mailcanary@{from_domain}", self.0)
    }

    /// Extracts the token from a Message-ID made by [`TrackingToken::message_id`],
    /// with or without angle brackets.
    pub fn from_message_id(message_id: &str) -> Option<TrackingToken> {
        let id = message_id.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, _domain) = id.split_once('@')?;
        TrackingToken::parse(local.strip_suffix(".mailcanary")?)
    }
}

impl fmt::Display for TrackingToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for TrackingToken {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        TrackingToken::parse(&text).ok_or_else(|| format!("invalid tracking token {text:?}"))
    }
}

impl From<TrackingToken> for String {
    fn from(token: TrackingToken) -> String {
        token.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_parses() {
        let token = TrackingToken::generate();
        assert_eq!(token.as_str().len(), PREFIX.len() + RANDOM_LENGTH);
        assert_eq!(TrackingToken::parse(token.as_str()), Some(token));
    }

    #[test]
    fn generated_tokens_differ() {
        assert_ne!(TrackingToken::generate(), TrackingToken::generate());
    }

    #[test]
    fn token_round_trips_through_message_id() {
        let token = TrackingToken::generate();
        let message_id = format!("<{}>", token.message_id("news.example.com"));
        assert_eq!(TrackingToken::from_message_id(&message_id), Some(token));
    }

    #[test]
    fn foreign_message_id_has_no_token() {
        assert_eq!(TrackingToken::from_message_id("<abc@example.com>"), None);
    }
}
