//! Errors of zone loading, the local server and lookups.

use std::net::SocketAddr;
use std::path::PathBuf;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// A failure to start DNS for a run or to complete a lookup.
///
/// A name that does not exist is `NotFound`. A name that exists without
/// records of the requested type is not an error, because the lookups return
/// an empty list for it.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("failed to read zone file {}: {source}", path.display())]
    ReadZone {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "invalid zone file {}{}: {reason}; fix the record or remove the file from the [dns] zones",
        path.display(),
        line.map(|line| format!(" line {line}")).unwrap_or_default()
    )]
    InvalidZone {
        path: PathBuf,
        /// 1-based line where the parser stopped, when it could be located.
        line: Option<usize>,
        reason: String,
    },

    #[error("zone file {} cannot be served: {reason}; every zone needs an SOA record at its origin", path.display())]
    ZoneSetup { path: PathBuf, reason: String },

    #[error(
        "zone {origin} is defined twice, in {} and {}; keep one of the files in the [dns] zones",
        first.display(),
        second.display()
    )]
    DuplicateZone { origin: String, first: PathBuf, second: PathBuf },

    #[error("failed to start the local DNS server on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "failed to read the system DNS configuration (/etc/resolv.conf): {reason}; set nameservers in the [dns] table"
    )]
    SystemConfig { reason: String },

    #[error("failed to build the DNS resolver for {server}: {reason}")]
    Resolver { server: String, reason: String },

    #[error("invalid domain name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    #[error(
        "{name} does not exist (NXDOMAIN from {server}); check the name, or add it to a local zone in the [dns] table"
    )]
    NotFound { name: String, server: String },

    #[error("{record_type} lookup of {name} timed out at {server}; check that the nameserver is running and reachable")]
    Timeout { name: String, record_type: RecordType, server: String },

    #[error("{server} answered {code} to the {record_type} lookup of {name}; check the nameserver, or retry later")]
    ServerFailure { name: String, record_type: RecordType, server: String, code: ResponseCode },

    #[error("{record_type} lookup of {name} failed at {server}: {reason}")]
    Lookup { name: String, record_type: RecordType, server: String, reason: String },

    #[error(
        "{domain} publishes a null MX (RFC 7505) and accepts no mail; remove its seeds or route them with [delivery] routes"
    )]
    NullMx { domain: String },

    #[error("no mail server of {domain} has an address (tried {hosts}); check the A and AAAA records of its MX hosts")]
    NoAddress { domain: String, hosts: String },
}

impl DnsError {
    /// Returns whether a later retry of the same lookup may succeed: a timeout or a
    /// server failure, as opposed to a response that the name does not exist.
    pub fn is_transient(&self) -> bool {
        matches!(self, DnsError::Timeout { .. } | DnsError::ServerFailure { .. })
    }
}
