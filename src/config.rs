//! Loading TOML files strictly: syntax errors, unknown keys and invalid values
//! are reported as `file:line:column` with the dotted key, because a typo in
//! a scenario or policy must never pass silently.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// An invalid value found while validating a parsed TOML file: the byte span
/// of the value (when known), its dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub span: Option<Range<usize>>,
    pub key: String,
    pub message: String,
}

impl FieldError {
    pub fn new(span: Option<Range<usize>>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { span, key: key.into(), message: message.into() }
    }

    pub fn at<T>(value: &serde_spanned::Spanned<T>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Some(value.span()), key, message)
    }
}

/// One error in a configuration file, located for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column, absent when the error has no position.
    pub position: Option<(usize, usize)>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        match &self.key {
            Some(key) => write!(f, ": {key}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

/// Every error found in one file, so the user can fix them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A TOML file read into memory, kept so that spans can be turned into lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Reads `path`, reporting an unreadable file as a diagnostic on that file.
    pub fn read(path: &Path) -> Result<Self, Diagnostics> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self { path: path.to_path_buf(), text }),
            Err(error) => Err(Diagnostics(vec![Diagnostic {
                file: path.to_path_buf(),
                position: None,
                key: None,
                message: format!("cannot read the file: {error}"),
            }])),
        }
    }

    /// Deserializes the whole file, turning a TOML or schema error (an
    /// unknown key, a wrong type) into a located diagnostic.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        toml::from_str(&self.text).map_err(|error| {
            let mut message = error.message().trim_end().to_string();
            if message.starts_with("invalid type") || message.starts_with("invalid value") {
                message.push_str("; write a value of the type this key takes (docs/scenario.md lists each key's type)");
            }
            Diagnostics(vec![Diagnostic {
                file: self.path.clone(),
                position: error.span().map(|span| self.line_column(span.start)),
                key: error.span().and_then(|span| self.key_at(span.start)),
                message,
            }])
        })
    }

    /// Locates validation errors found after parsing.
    pub fn diagnostics(&self, errors: Vec<FieldError>) -> Diagnostics {
        Diagnostics(
            errors
                .into_iter()
                .map(|error| Diagnostic {
                    file: self.path.clone(),
                    position: error.span.map(|span| self.line_column(span.start)),
                    key: Some(error.key),
                    message: error.message,
                })
                .collect(),
        )
    }

    /// Returns the dotted key written on the line of `offset`, prefixed by
    /// the table header above it (`delivery.retry`), when the line is a
    /// plain `key = value` line.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |index| index + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let (key, _) = line.split_once('=')?;
        let key = key.trim().trim_matches('"');
        let valid = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.\"".contains(c));
        if !valid {
            return None;
        }
        let table = self.text[..line_start].lines().rev().map(str::trim).find(|line| line.starts_with('['));
        let table = table.map(|header| header.trim_start_matches('[').trim_end_matches(']').trim().to_string());
        Some(match table {
            Some(table) if !table.is_empty() => format!("{table}.{key}"),
            _ => key.to_string(),
        })
    }

    /// Returns the 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

/// Parses a duration written as a number with a unit: `500ms`, `30s`, `2m`,
/// `1h`, `1d`, or a sum such as `1m30s`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; write a number with a unit, such as 30s, 2m or 1h".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {text:?}; write a number with a unit, such as 30s, 2m or 1h"));
        }
        let number: u64 =
            rest[..digits].parse().map_err(|_| format!("invalid duration {text:?}: the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("invalid duration {text:?}: the unit is missing; use ms, s, m, h or d")),
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}; use ms, s, m, h or d")),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

/// Serializes a `Duration` as whole or fractional seconds in records.
pub mod duration_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_units() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
    }

    #[test]
    fn duration_rejects_bad_input() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").unwrap_err().contains("unit is missing"));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn line_column_counts_from_one() {
        let file = SourceFile { path: "x.toml".into(), text: "a = 1\nbé = 2\n".into() };
        assert_eq!(file.line_column(0), (1, 1));
        assert_eq!(file.line_column(6), (2, 1));
        assert_eq!(file.line_column(9), (2, 3));
    }
}
