//! The run's resolver: MX and address lookups, delivery targets in the order
//! of RFC 5321 section 5.1, and the mail-auth resolver on the same servers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::MessageAuthenticator;

use super::server::LocalServer;
use super::{DnsError, DnsSettings};

/// One MX record of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    /// Host name without the trailing dot; `.` for a null MX (RFC 7505).
    pub exchange: String,
}

impl MxRecord {
    /// Returns whether this is a null MX (`MX 0 .`), the record of a domain that
    /// accepts no mail.
    pub fn is_null(&self) -> bool {
        self.exchange == "."
    }
}

/// A host to deliver a domain's mail to, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    /// Host name without the trailing dot.
    pub host: String,
    /// MX preference, or `None` for the domain itself (implicit MX).
    pub preference: Option<u16>,
    /// A and AAAA addresses; empty when the host has none.
    pub addresses: Vec<IpAddr>,
}

/// DNS for a run: a resolver over the scenario's local zones, its upstream
/// nameservers or the system's configuration.
///
/// Each `Dns` builds its own resolvers, so no cache is shared between two
/// instances. Within one instance, hickory-resolver 0.26 caches records for
/// their TTL, and NXDOMAIN or empty responses for the SOA minimum of the zone
/// (60 seconds for the synthetic root). It never caches timeouts or server
/// failures, so a retry queries the server again.
pub struct Dns {
    resolver: TokioResolver,
    authenticator: Arc<MessageAuthenticator>,
    server: Option<LocalServer>,
    /// The servers that resolve the lookups, named in error messages.
    source: String,
}

impl fmt::Debug for Dns {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Dns")
            .field("source", &self.source)
            .field("local_server", &self.local_server())
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Starts DNS for `settings`.
    ///
    /// With zones, an authoritative server on 127.0.0.1 serves them and
    /// forwards every other name to the nameservers, or returns NXDOMAIN for
    /// it when there are none. Without zones, lookups go to the nameservers,
    /// or to those of /etc/resolv.conf when none are given.
    pub async fn start(settings: &DnsSettings) -> Result<Dns, DnsError> {
        let options = resolver_options();

        if !settings.zones.is_empty() {
            let upstream = nameserver_configs(&settings.nameservers);
            let server = LocalServer::start(&settings.zones, upstream, options.clone()).await?;
            let config = ResolverConfig::from_name_servers(nameserver_configs(&[server.address]));
            let source = format!("the local DNS server {}", server.address);
            return Dns::build(config, options, source, Some(server));
        }

        if !settings.nameservers.is_empty() {
            let config = ResolverConfig::from_name_servers(nameserver_configs(&settings.nameservers));
            let listed: Vec<String> = settings.nameservers.iter().map(ToString::to_string).collect();
            let source = format!("nameserver {}", listed.join(", "));
            return Dns::build(config, options, source, None);
        }

        let (config, options) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|error| DnsError::SystemConfig { reason: error.to_string() })?;
        Dns::build(config, options, "the system resolver".to_owned(), None)
    }

    fn build(
        config: ResolverConfig,
        options: ResolverOpts,
        source: String,
        server: Option<LocalServer>,
    ) -> Result<Dns, DnsError> {
        let resolver_error = |error: NetError| DnsError::Resolver { server: source.clone(), reason: error.to_string() };
        let resolver = TokioResolver::builder_with_config(config.clone(), TokioRuntimeProvider::default())
            .with_options(options.clone())
            .build()
            .map_err(resolver_error)?;
        let authenticator = MessageAuthenticator::new(config, options).map_err(resolver_error)?;
        tracing::debug!(%source, "DNS ready");

        Ok(Dns { resolver, authenticator: Arc::new(authenticator), server, source })
    }

    /// Stops the local server, if any, and waits for its tasks to end.
    /// Dropping the `Dns` also stops it, without waiting.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Address of the local server (UDP and TCP on one port), when zones are
    /// served.
    pub fn local_server(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|server| server.address)
    }

    /// Returns the mail-auth resolver for SPF, DKIM and DMARC checks, which
    /// queries the same servers as the lookups here.
    pub fn authenticator(&self) -> Arc<MessageAuthenticator> {
        Arc::clone(&self.authenticator)
    }

    /// Looks up the MX records of `domain`, sorted by preference; records of
    /// equal preference keep the order of the response. A domain without MX
    /// records returns an empty list.
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let name = parse_name(domain)?;
        let records = self.query(domain, &name, RecordType::MX).await?;

        let mut exchanges: Vec<MxRecord> = records
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some(MxRecord { preference: mx.preference, exchange: host_text(&mx.exchange) }),
                _ => None,
            })
            .collect();
        exchanges.sort_by_key(|mx| mx.preference);
        Ok(exchanges)
    }

    /// Looks up the A and AAAA addresses of `host`, IPv4 first.
    ///
    /// When one of the two lookups fails and the other returns addresses,
    /// those addresses are returned; the failure is logged at debug level.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = parse_name(host)?;
        let (ipv4, ipv6) =
            tokio::join!(self.query(host, &name, RecordType::A), self.query(host, &name, RecordType::AAAA),);

        let mut addresses = Vec::new();
        let mut first_error = None;
        for result in [ipv4, ipv6] {
            match result {
                Ok(records) => addresses.extend(records.iter().filter_map(record_address)),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }

        match first_error {
            Some(error) if addresses.is_empty() => Err(error),
            Some(error) => {
                tracing::debug!(%host, %error, "one address family failed; using the other");
                Ok(addresses)
            }
            None => Ok(addresses),
        }
    }

    /// Looks up the TXT records of `name`, each as its strings joined
    /// (RFC 7208 section 3.3). No records is an empty list; NXDOMAIN is
    /// `DnsError::NotFound`.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let parsed = parse_name(name)?;
        let records = self.query(name, &parsed, RecordType::TXT).await?;
        Ok(records
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => {
                    Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect::<String>())
                }
                _ => None,
            })
            .collect())
    }

    /// Looks up the PTR names of `ip`, without trailing dots.
    ///
    /// NOTE: hickory-resolver 0.26 resolves reverse lookups of 127.0.0.0/8
    /// with `localhost.` itself, so loopback source IPs never reach a zone.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = Name::from(ip);
        let text = name.to_string();
        let records = self.query(&text, &name, RecordType::PTR).await?;
        Ok(records
            .iter()
            .filter_map(|record| match &record.data {
                RData::PTR(ptr) => Some(host_text(&ptr.0)),
                _ => None,
            })
            .collect())
    }

    /// Lists the hosts that receive mail for `domain` (RFC 5321 section 5.1):
    /// its MX hosts in preference order, or the domain itself when it has no
    /// MX records (implicit MX).
    ///
    /// An MX host whose address lookup fails stays in the list with no
    /// addresses, so the caller can report it. The call fails only when no
    /// host has an address. A null MX (RFC 7505) is `DnsError::NullMx`.
    pub async fn delivery_targets(&self, domain: &str) -> Result<Vec<DeliveryTarget>, DnsError> {
        let exchanges = self.mx(domain).await?;
        if exchanges.iter().any(MxRecord::is_null) {
            return Err(DnsError::NullMx { domain: domain.to_owned() });
        }

        if exchanges.is_empty() {
            tracing::debug!(%domain, "no MX records; delivering to the domain itself");
            let addresses = self.addresses(domain).await?;
            if addresses.is_empty() {
                return Err(DnsError::NoAddress { domain: domain.to_owned(), hosts: domain.to_owned() });
            }
            return Ok(vec![DeliveryTarget {
                host: domain.trim_end_matches('.').to_owned(),
                preference: None,
                addresses,
            }]);
        }

        let mut targets = Vec::with_capacity(exchanges.len());
        let mut first_error = None;
        for mx in exchanges {
            let addresses = match self.addresses(&mx.exchange).await {
                Ok(addresses) => addresses,
                Err(error) => {
                    tracing::debug!(%domain, host = %mx.exchange, %error, "MX host has no usable address");
                    first_error.get_or_insert(error);
                    Vec::new()
                }
            };
            targets.push(DeliveryTarget { host: mx.exchange, preference: Some(mx.preference), addresses });
        }

        if targets.iter().all(|target| target.addresses.is_empty()) {
            // A timeout explains more than "no address", so it is kept when
            // it is the reason.
            return Err(match first_error {
                Some(error) if error.is_transient() => error,
                _ => DnsError::NoAddress {
                    domain: domain.to_owned(),
                    hosts: targets.iter().map(|target| target.host.as_str()).collect::<Vec<_>>().join(", "),
                },
            });
        }
        Ok(targets)
    }

    /// Runs one query. NXDOMAIN is an error; an existing name without records
    /// of the type returns an empty list.
    async fn query(&self, text: &str, name: &Name, record_type: RecordType) -> Result<Vec<Record>, DnsError> {
        let name_text = text.trim_end_matches('.').to_owned();
        match self.resolver.lookup(name.clone(), record_type).await {
            Ok(lookup) => Ok(lookup.answers().to_vec()),
            Err(NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(no_records))) => {
                if no_records.response_code == ResponseCode::NXDomain {
                    Err(DnsError::NotFound { name: name_text, server: self.source.clone() })
                } else {
                    Ok(Vec::new())
                }
            }
            Err(NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(code))) => {
                Err(DnsError::ServerFailure { name: name_text, record_type, server: self.source.clone(), code })
            }
            Err(NetError::Timeout) => {
                Err(DnsError::Timeout { name: name_text, record_type, server: self.source.clone() })
            }
            Err(other) => Err(DnsError::Lookup {
                name: name_text,
                record_type,
                server: self.source.clone(),
                reason: other.to_string(),
            }),
        }
    }
}

/// Resolver options for every `Dns`: answers come only from DNS, because
/// /etc/hosts would hide what a zone publishes.
fn resolver_options() -> ResolverOpts {
    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    options
}

/// UDP and TCP to each address, on its port.
fn nameserver_configs(addresses: &[SocketAddr]) -> Vec<NameServerConfig> {
    addresses
        .iter()
        .map(|address| {
            let mut udp = ConnectionConfig::udp();
            udp.port = address.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = address.port();
            NameServerConfig::new(address.ip(), true, vec![udp, tcp])
        })
        .collect()
}

/// Parses a host or domain name as a fully qualified name, so no search
/// domain is ever appended. Non-ASCII labels are converted to A-labels.
fn parse_name(text: &str) -> Result<Name, DnsError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(DnsError::InvalidName { name: text.to_owned(), reason: "the name is empty".to_owned() });
    }
    let mut name = Name::from_utf8(trimmed)
        .map_err(|error| DnsError::InvalidName { name: text.to_owned(), reason: error.to_string() })?;
    name.set_fqdn(true);
    Ok(name)
}

/// Formats a name without the trailing dot. The root stays `.`.
fn host_text(name: &Name) -> String {
    if name.is_root() {
        return ".".to_owned();
    }
    name.to_ascii().trim_end_matches('.').to_owned()
}

fn record_address(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(address) => Some(IpAddr::V4(address.0)),
        RData::AAAA(address) => Some(IpAddr::V6(address.0)),
        _ => None,
    }
}
