//! DNS for a run: the scenario's local zones answered by an in-process
//! authoritative server, optional upstream nameservers, MX and address lookups
//! for delivery, and the mail-auth resolver that SPF, DKIM and DMARC use.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The validated `[dns]` table of a scenario or simulator policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Upstream nameservers to ask instead of the system's resolver.
    pub nameservers: Vec<SocketAddr>,
    /// Zone files (RFC 1035 master format) answered locally before any
    /// upstream; absolute paths.
    pub zones: Vec<PathBuf>,
}
