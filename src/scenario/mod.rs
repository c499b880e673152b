//! Scenarios: what to send, through which paths, to which seeds. A scenario
//! file is parsed into the serde mirror in [`raw`], then validated once into
//! [`Scenario`], which nothing downstream parses again.

pub mod address;
pub mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Diagnostics, SourceFile};
use crate::dns::DnsSettings;
use crate::message::DkimSigner;
use crate::sim::policy::SimConfig;

pub use address::EmailAddress;

/// The cap on planned messages when a scenario sets none: enough for a
/// control send, small enough that a mistake cannot become a mail flood.
pub const DEFAULT_MAX_MESSAGES: u32 = 20;

/// A validated scenario.
#[derive(Debug)]
pub struct Scenario {
    /// The scenario file, as given on the command line.
    pub file: PathBuf,
    pub name: String,
    /// The name reduced to `[a-z0-9-]`, for run directory names.
    pub slug: String,
    pub description: Option<String>,
    pub max_messages: u32,
    pub sender: Sender,
    pub dkim: Vec<DkimSigner>,
    pub paths: Vec<Path>,
    pub seeds: Vec<Seed>,
    pub mailboxes: BTreeMap<String, Mailbox>,
    pub streams: Vec<Stream>,
    pub delivery: Delivery,
    pub dns: DnsSettings,
    pub simulator: Option<SimConfig>,
    pub preflight: PreflightSettings,
    pub collect: Collect,
    pub gate: Gate,
    pub context: Context,
}

/// Options of the preflight checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PreflightSettings {
    /// DNS blocklist zones to look each source IP up in; none by default,
    /// because each lookup is a DNS query to the list's operator.
    pub dnsbl: Vec<String>,
}

/// How long to look for delivered copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Collect {
    #[serde(with = "crate::config::duration_seconds")]
    pub timeout: Duration,
    #[serde(with = "crate::config::duration_seconds")]
    pub poll_interval: Duration,
}

impl Default for Collect {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(120), poll_interval: Duration::from_secs(2) }
    }
}

/// An authentication method the gate can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    Spf,
    Dkim,
    Dmarc,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Spf => "spf",
            AuthMethod::Dkim => "dkim",
            AuthMethod::Dmarc => "dmarc",
        }
    }
}

/// The thresholds of the checkpoint. `gate` can re-evaluate a saved run
/// with another scenario's gate, so the values are recorded with the run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Gate {
    /// Methods that must pass for control copies, at the receiver and in
    /// the own check.
    pub require_auth: Vec<AuthMethod>,
    /// Control copies must land in the inbox.
    pub require_inbox: bool,
    /// Share of control messages (0 to 1) that may end deferred or rejected
    /// before the checkpoint leaves healthy.
    pub max_control_deferral_rate: f64,
    /// Share of bulk messages that may end deferred or rejected while
    /// control passes before the checkpoint is warning.
    pub max_bulk_deferral_rate: f64,
    /// Distinct seeds of one provider whose control messages must all be
    /// refused, over every path to it, for the checkpoint to be critical.
    pub critical_min_seeds: u32,
    /// A deferral that cleared on retry still counts as healthy.
    pub allow_cleared_deferrals: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            require_auth: vec![AuthMethod::Spf, AuthMethod::Dkim, AuthMethod::Dmarc],
            require_inbox: true,
            max_control_deferral_rate: 0.0,
            max_bulk_deferral_rate: 0.0,
            critical_min_seeds: 2,
            allow_cleared_deferrals: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sender {
    pub from: EmailAddress,
    pub mail_from: String,
    pub reply_to: Option<EmailAddress>,
}

/// One way out: direct delivery from a source IP, or through a relay MTA.
#[derive(Debug, Clone, Serialize)]
pub struct Path {
    pub name: String,
    pub pool: String,
    pub source_ip: Option<IpAddr>,
    pub helo: String,
    pub relay: Option<Relay>,
    /// Headers added to every message sent on this path, such as the header
    /// that selects a virtual MTA on a relay.
    pub headers: Vec<(String, String)>,
}

/// An MTA that delivers on our behalf (`smtp://host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relay {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct Seed {
    pub address: String,
    /// The domain part, lowercased: the key for MX lookups and routes.
    pub domain: String,
    pub mailbox: Option<String>,
}

/// A mailbox from which the delivered copies of seeds are read back.
#[derive(Debug, Clone, Serialize)]
pub enum Mailbox {
    Maildir { root: PathBuf, spam_folders: Vec<String>, authserv_id: Option<String> },
    Imap(ImapMailbox),
}

#[derive(Debug, Clone, Serialize)]
pub struct ImapMailbox {
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    pub username: String,
    /// The source of the password. The password itself is read only when the
    /// mailbox is opened and is never stored in a record.
    pub password: SecretSource,
    pub ca_file: Option<PathBuf>,
    pub accept_invalid_certs: bool,
    pub spam_folders: Vec<String>,
    pub authserv_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImapTls {
    Implicit,
    Starttls,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Control,
    Bulk,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Control => "control",
            Role::Bulk => "bulk",
        }
    }
}

/// A set of messages with one role, sent over the named paths to the seeds.
#[derive(Debug, Clone)]
pub struct Stream {
    pub name: String,
    pub role: Role,
    /// Indexes into [`Scenario::paths`].
    pub paths: Vec<usize>,
    /// Indexes into [`Scenario::seeds`].
    pub seeds: Vec<usize>,
    /// Messages per path and seed.
    pub count: u32,
    /// A From that replaces the sender's, for streams that test a foreign or
    /// spoofed identity on purpose.
    pub from: Option<EmailAddress>,
    pub content: Content,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Content {
    /// A plain message built from a subject and body with placeholders.
    Compose { subject: String, body: String },
    /// A saved message (`.eml`) re-addressed and re-signed for each seed.
    Template { file: PathBuf, bytes: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartTlsMode {
    Opportunistic,
    Required,
    Never,
}

/// Per-step SMTP timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub command: Duration,
    pub data: Duration,
    pub end_of_data: Duration,
}

impl Default for Timeouts {
    /// Returns the minimums of RFC 5321 section 4.5.3.2, and 30 s to connect.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data: Duration::from_secs(120),
            end_of_data: Duration::from_secs(600),
        }
    }
}

/// A delivery route that overrides the MX lookup for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    /// Attempts started per minute on each path; `None` sends without pacing.
    pub rate_per_minute: Option<u32>,
    /// Delays before each retry of a deferred or failed attempt.
    pub retry: Vec<Duration>,
    pub starttls: StartTlsMode,
    pub verify_certificates: bool,
    /// Extra trust roots, DER-encoded, read from `ca_file`.
    pub ca_certificates: Vec<Vec<u8>>,
    /// Keyed by lowercased domain.
    pub routes: BTreeMap<String, Route>,
    pub timeouts: Timeouts,
}

/// Facts for the evidence packet, copied into the run record as written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    pub remediation: Vec<String>,
    pub current_rate_limit: Option<String>,
    pub contact: Option<String>,
    pub ticket: Option<String>,
    pub notes: Vec<String>,
}

impl Scenario {
    /// Reads and validates a scenario file. Every problem found is returned
    /// at once, each with its file, line, column and key.
    pub fn load(file: &FsPath) -> Result<Scenario, Diagnostics> {
        let source = SourceFile::read(file)?;
        let raw: raw::ScenarioToml = source.parse()?;
        validate::validate(&source, raw)
    }

    pub fn path_by_name(&self, name: &str) -> Option<&Path> {
        self.paths.iter().find(|path| path.name == name)
    }

    /// Checks that every path's source IP belongs to this host, by binding
    /// it (no packet is sent). A path that cannot bind its address would
    /// send nothing, and its failures would tell nothing about the receiver.
    pub fn check_source_addresses(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for path in &self.paths {
            let Some(ip) = path.source_ip else { continue };
            if let Err(error) = std::net::UdpSocket::bind((ip, 0)) {
                problems.push(format!(
                    "path {}: source_ip {ip} cannot be bound on this host ({error}); add the address to an interface, or correct source_ip in {}",
                    path.name,
                    self.file.display()
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
    }

    /// Returns the distinct recipient domains of all seeds, in seed order.
    pub fn seed_domains(&self) -> Vec<String> {
        seed_domains(&self.seeds)
    }
}

/// Returns the distinct domains of `seeds`, in seed order.
fn seed_domains(seeds: &[Seed]) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for seed in seeds {
        if !domains.contains(&seed.domain) {
            domains.push(seed.domain.clone());
        }
    }
    domains
}
