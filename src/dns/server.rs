//! The in-process authoritative server that serves a scenario's local zones
//! (RFC 1035 master files) on loopback, and forwards or denies every other
//! name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RrKey};
use hickory_proto::serialize::txt::Parser;
use hickory_resolver::config::NameServerConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_server::Server;
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

use super::DnsError;

/// Idle time after which the server closes a TCP connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Attempts at binding TCP on the port the kernel gave the UDP socket, before
/// giving up; another process can take that TCP port in between.
const BIND_ATTEMPTS: usize = 8;

/// Negative-caching TTL of the synthetic root zone, in seconds.
const ROOT_SOA_MINIMUM: u32 = 60;

/// A running local server; dropping it stops its tasks.
pub(super) struct LocalServer {
    pub(super) address: SocketAddr,
    server: Server<Catalog>,
}

impl LocalServer {
    /// Loads the zones and starts serving them on 127.0.0.1, UDP and TCP on
    /// one port. Names outside the zones go to `upstream` when it is not
    /// empty and get NXDOMAIN otherwise.
    pub(super) async fn start(
        zones: &[PathBuf],
        upstream: Vec<NameServerConfig>,
        upstream_options: hickory_resolver::config::ResolverOpts,
    ) -> Result<LocalServer, DnsError> {
        let mut catalog = Catalog::new();
        let mut origins: BTreeMap<LowerName, PathBuf> = BTreeMap::new();
        for path in zones {
            let (origin, handler) = load_zone(path)?;
            let key = LowerName::new(&origin);
            if let Some(first) = origins.get(&key) {
                return Err(DnsError::DuplicateZone {
                    origin: origin.to_string(),
                    first: first.clone(),
                    second: path.clone(),
                });
            }
            origins.insert(key.clone(), path.clone());
            catalog.upsert(key, vec![handler]);
        }

        // A zone file for the root itself takes precedence over both
        // fallbacks.
        let root = LowerName::new(&Name::root());
        if !origins.contains_key(&root) {
            let fallback: Arc<dyn ZoneHandler> = if upstream.is_empty() {
                // hickory-server returns REFUSED for a name outside every zone,
                // and resolvers retry a refusal slowly. An authoritative root
                // with only an SOA returns NXDOMAIN at once instead.
                Arc::new(empty_root_zone())
            } else {
                let config = ForwardConfig { name_servers: upstream, options: Some(upstream_options) };
                let handler = ForwardZoneHandler::builder_tokio(config).build().map_err(|reason| {
                    DnsError::Resolver { server: "the local DNS server's forwarder".to_owned(), reason }
                })?;
                Arc::new(handler)
            };
            catalog.upsert(root, vec![fallback]);
        }

        let (udp, tcp) = bind_loopback().await?;
        let address = udp
            .local_addr()
            .map_err(|source| DnsError::Bind { address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), source })?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::debug!(%address, zones = zones.len(), "local DNS server started");

        Ok(LocalServer { address, server })
    }

    /// Stops accepting queries and waits for the server tasks to end.
    pub(super) async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::warn!(address = %self.address, %error, "local DNS server stopped with an error");
        }
    }
}

/// Binds UDP on an ephemeral loopback port and TCP on the same port.
async fn bind_loopback() -> Result<(UdpSocket, TcpListener), DnsError> {
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(any_port).await.map_err(|source| DnsError::Bind { address: any_port, source })?;
        let address = udp.local_addr().map_err(|source| DnsError::Bind { address: any_port, source })?;
        match TcpListener::bind(address).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // The TCP port is taken by someone else: try another UDP port.
            Err(source) => last_error = Some(DnsError::Bind { address, source }),
        }
    }
    Err(last_error.expect("BIND_ATTEMPTS is above zero"))
}

/// Parses one master file into an authoritative zone handler.
fn load_zone(path: &Path) -> Result<(Name, Arc<dyn ZoneHandler>), DnsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| DnsError::ReadZone { path: path.to_path_buf(), source })?;

    let (origin, records) = match parse_zone(&text, path) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return Err(DnsError::InvalidZone {
                path: path.to_path_buf(),
                line: locate_parse_error(&text, path, &reason),
                reason,
            });
        }
    };

    if let Some(owner) = txt_split_in_parentheses(&records) {
        return Err(DnsError::InvalidZone {
            path: path.to_path_buf(),
            line: None,
            reason: format!(
                "the TXT record of {owner} is split across lines in parentheses, which the zone parser of hickory-proto 0.26 reads with its quotes and comments; write all its strings on one line"
            ),
        });
    }

    let handler =
        InMemoryZoneHandler::<TokioRuntimeProvider>::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .map_err(|reason| DnsError::ZoneSetup { path: path.to_path_buf(), reason })?;
    tracing::debug!(%origin, path = %path.display(), "zone loaded");
    Ok((origin, Arc::new(handler)))
}

type ParsedZone = (Name, BTreeMap<RrKey, RecordSet>);

fn parse_zone(text: &str, path: &Path) -> Result<ParsedZone, String> {
    Parser::new(text, Some(path.to_path_buf()), None).parse().map_err(|error| error.to_string())
}

/// Finds a TXT record whose text starts with a double quote: hickory-proto
/// 0.26 lexes a parenthesised list without quoting, so `( "a; b" "c" )`
/// becomes the strings `"a` and `"c"`, with `; b` dropped as a comment.
fn txt_split_in_parentheses(records: &BTreeMap<RrKey, RecordSet>) -> Option<String> {
    records
        .values()
        .flat_map(|set| set.records_without_rrsigs())
        .find(|record| match &record.data {
            RData::TXT(txt) => txt.txt_data.iter().any(|part| part.first() == Some(&b'"')),
            _ => false,
        })
        .map(|record| record.name.to_string())
}

/// Finds the line on which the parser stops with `reason`.
///
/// hickory-proto's parser reports no position, but it reads records in order
/// and stops at the first bad one, so the shortest prefix of whole lines that
/// fails with the same message ends on the offending line. A prefix cut inside
/// a parenthesised record fails with a different message, so it is skipped.
fn locate_parse_error(text: &str, path: &Path, reason: &str) -> Option<usize> {
    let line_ends: Vec<usize> =
        text.match_indices('\n').map(|(index, _)| index + 1).chain(std::iter::once(text.len())).collect();
    let fails_the_same = |lines: usize| {
        let prefix = &text[..line_ends[lines - 1]];
        matches!(parse_zone(prefix, path), Err(other) if other == reason)
    };

    // Binary search for the smallest line count whose prefix fails alike.
    let (mut low, mut high) = (1, line_ends.len());
    if !fails_the_same(high) {
        return None;
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if fails_the_same(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Some(low)
}

/// Builds a root zone with only an SOA record, so every name outside the
/// local zones is NXDOMAIN.
fn empty_root_zone() -> InMemoryZoneHandler {
    let root = Name::root();
    let soa = SOA::new(
        Name::from_ascii("localhost.").expect("a valid name"),
        Name::from_ascii("hostmaster.localhost.").expect("a valid name"),
        1,
        3600,
        600,
        86_400,
        ROOT_SOA_MINIMUM,
    );
    let mut zone = InMemoryZoneHandler::empty(root.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    zone.upsert_mut(Record::from_rdata(root, ROOT_SOA_MINIMUM, RData::SOA(soa)), 1);
    zone
}
