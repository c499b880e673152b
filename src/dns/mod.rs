//! DNS for a run: the scenario's local zones answered by an in-process
//! authoritative server, optional upstream nameservers, MX and address lookups
//! for delivery, and the mail-auth resolver that SPF, DKIM and DMARC use.

mod error;
mod lookup;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use error::DnsError;
pub use lookup::{DeliveryTarget, Dns, MxRecord};

/// The validated `[dns]` table of a scenario or simulator policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Upstream nameservers to ask instead of the system's resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Zone files (RFC 1035 master format) served locally before any
    /// upstream; absolute paths.
    pub zones: Vec<PathBuf>,
}

/// The `[dns]` table as written in a scenario or simulator policy file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsToml {
    /// `host:port` or a bare IP (port 53).
    #[serde(default)]
    pub nameservers: Vec<serde_spanned::Spanned<String>>,
    /// Zone file paths, relative to the file that names them.
    #[serde(default)]
    pub zones: Vec<serde_spanned::Spanned<String>>,
}

impl DnsToml {
    /// Validates the table; `base_dir` is the directory of the file it came
    /// from and `key` its dotted name (`dns`).
    pub fn validate(
        &self,
        base_dir: &std::path::Path,
        key: &str,
    ) -> Result<DnsSettings, Vec<crate::config::FieldError>> {
        use crate::config::FieldError;

        let mut errors = Vec::new();
        let mut settings = DnsSettings::default();
        for (index, entry) in self.nameservers.iter().enumerate() {
            let text = entry.get_ref().trim();
            let parsed = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(address) => settings.nameservers.push(address),
                Err(_) => errors.push(FieldError::at(
                    entry,
                    format!("{key}.nameservers[{index}]"),
                    format!("invalid nameserver {text:?}; write an IP address, optionally with a port, such as 192.0.2.53 or 127.0.0.1:5353"),
                )),
            }
        }
        for (index, entry) in self.zones.iter().enumerate() {
            let path = base_dir.join(entry.get_ref());
            if path.is_file() {
                settings.zones.push(path);
            } else {
                errors.push(FieldError::at(
                    entry,
                    format!("{key}.zones[{index}]"),
                    format!("zone file {} not found (paths are relative to this file)", path.display()),
                ));
            }
        }
        if errors.is_empty() { Ok(settings) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests;
