//! Email addresses as scenarios write them: `Name <local@domain>` or a bare
//! `local@domain` (RFC 5322 section 3.4, restricted to what an SMTP envelope
//! can carry without SMTPUTF8).

use std::fmt;

use serde::Serialize;

/// A mailbox with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailAddress {
    pub display_name: Option<String>,
    pub address: String,
}

impl EmailAddress {
    /// Parses `Name <local@domain>`, `"Quoted, Name" <local@domain>` or
    /// `local@domain`.
    pub fn parse(text: &str) -> Result<EmailAddress, String> {
        let text = text.trim();
        let (display_name, address) = match (text.find('<'), text.rfind('>')) {
            (Some(open), Some(close)) if open < close && close == text.len() - 1 => {
                let name = text[..open].trim();
                let name = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name).trim();
                let name = (!name.is_empty()).then(|| name.to_string());
                (name, text[open + 1..close].trim())
            }
            (None, None) => (None, text),
            _ => return Err(format!("invalid address {text:?}; write local@domain or Name <local@domain>")),
        };
        check_addr_spec(address)?;
        Ok(EmailAddress { display_name, address: address.to_string() })
    }

    pub fn domain(&self) -> &str {
        domain_of(&self.address)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.display_name {
            Some(name) => write!(f, "{name} <{}>", self.address),
            None => f.write_str(&self.address),
        }
    }
}

/// Returns the part after the last `@`.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// Checks a bare `local@domain` as it will appear in MAIL FROM or RCPT TO.
pub fn check_addr_spec(address: &str) -> Result<(), String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(format!("invalid address {address:?}: the @ is missing; write local@domain"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(format!("invalid address {address:?}: the local part must have 1 to 64 characters"));
    }
    let local_ok = local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(format!(
            "invalid address {address:?}: the local part may hold only letters, digits, dots (not leading, trailing or doubled) and !#$%&'*+-/=?^_`{{|}}~"
        ));
    }
    check_hostname(domain).map_err(|problem| format!("invalid address {address:?}: {problem}"))
}

/// Checks a DNS host name (RFC 1123 labels, at least two of them).
pub fn check_hostname(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("invalid host name {name:?}: it must have 1 to 253 characters"));
    }
    if !name.contains('.') {
        return Err(format!("invalid host name {name:?}: write a fully qualified name such as mta1.example.com"));
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "invalid host name {name:?}: the label {label:?} must have 1 to 63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_and_address() {
        let parsed = EmailAddress::parse("Deliverability <control@news.example.com>").unwrap();
        assert_eq!(parsed.display_name.as_deref(), Some("Deliverability"));
        assert_eq!(parsed.address, "control@news.example.com");
        assert_eq!(parsed.domain(), "news.example.com");
    }

    #[test]
    fn quoted_display_name() {
        let parsed = EmailAddress::parse("\"News, Team\" <news@example.com>").unwrap();
        assert_eq!(parsed.display_name.as_deref(), Some("News, Team"));
    }

    #[test]
    fn bare_address() {
        let parsed = EmailAddress::parse("seed@customer-a.example.net").unwrap();
        assert_eq!(parsed.display_name, None);
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@localhost",
            "a b@example.com",
            "a@-x.example.com",
            "Name <a@example.com",
            "a..b@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
