//! The gateway simulator: an SMTP receiver (RFC 5321, STARTTLS per RFC 3207)
//! that behaves like a protected gateway.
//!
//! Per client IP or CIDR it accepts, defers or rejects with provider-shaped
//! replies, defers after a volume of messages, or drops the connection in the
//! middle of DATA. What it accepts is authenticated with mail-auth (SPF, DKIM,
//! DMARC, optionally iprev), stamped with Received and Authentication-Results
//! headers, and delivered into one Maildir per recipient, into `.Junk` when
//! the rule sets `folder = "junk"` or DMARC fails.
//!
//! A scenario starts it in process with [`start`]; `mailcanary sim` runs it
//! alone from a policy file with [`run_standalone`].

mod auth;
mod maildir;
pub mod policy;
pub mod preset;
pub mod reply;
mod server;
mod session;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use auth::AuthSummary;
pub use policy::{Action, Folder, PolicyFileToml, Rule, SimConfig, SimulatorToml, Stage, validate};
pub use reply::Reply;
pub use server::{SimEvent, SimHandle, SimOutcome, start};

use crate::config::{Diagnostics, SourceFile};
use crate::dns::{Dns, DnsError, DnsSettings};

/// A failure to load a policy file or to run the standalone simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The policy file is unreadable or invalid; nothing was started.
    #[error("{0}")]
    Policy(Diagnostics),

    #[error("{0}")]
    Dns(#[from] DnsError),

    #[error(
        "refusing to listen on {address}: it is not a loopback address; \
         set allow_non_loopback = true in the policy's [simulator] table if the simulator should be reachable from the network"
    )]
    NonLoopbackListen { address: SocketAddr },

    #[error("failed to start the simulator on {address}: {source}")]
    Start {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to wait for Ctrl-C: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the simulator from a standalone policy file until Ctrl-C.
///
/// Loads `policy` (its `[simulator]` table and optional `[dns]` table),
/// starts DNS from `[dns]` or from the system's resolver configuration,
/// listens on `listen` (or the policy's address), and delivers under
/// `maildir`. Prints one line to stdout with the listening address and the
/// Maildir root, then serves until Ctrl-C and shuts down gracefully.
pub async fn run_standalone(policy: &Path, listen: Option<SocketAddr>, maildir: &Path) -> Result<(), SimError> {
    let (mut config, dns_settings) = load_policy(policy)?;
    if let Some(address) = listen {
        if !address.ip().is_loopback() && !config.allow_non_loopback {
            return Err(SimError::NonLoopbackListen { address });
        }
        config.listen = address;
    }

    let dns = Dns::start(&dns_settings).await?;
    let address = config.listen;
    let handle = start(config, dns.authenticator(), maildir.to_path_buf())
        .await
        .map_err(|source| SimError::Start { address, source })?;
    println!(
        "mailcanary sim listening on {}, delivering into {}",
        handle.local_addr(),
        handle.maildir_root().display()
    );

    let stopped = tokio::signal::ctrl_c().await.map_err(SimError::Signal);
    tracing::info!("stopping the simulator");
    handle.shutdown().await;
    dns.shutdown().await;
    stopped
}

/// Reads and validates a standalone policy file. A policy file has no seeds,
/// so it must list its `domains`.
pub fn load_policy(path: &Path) -> Result<(SimConfig, DnsSettings), SimError> {
    let file = SourceFile::read(path).map_err(SimError::Policy)?;
    let raw: PolicyFileToml = file.parse().map_err(SimError::Policy)?;
    let base_dir: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut errors = Vec::new();
    let config = validate(&raw.simulator, "simulator", &[]).map_err(|found| errors.extend(found)).ok();
    let dns = match &raw.dns {
        Some(table) => table.validate(&base_dir, "dns").map_err(|found| errors.extend(found)).ok(),
        None => Some(DnsSettings::default()),
    };

    match (config, dns) {
        (Some(config), Some(dns)) if errors.is_empty() => Ok((config, dns)),
        _ => Err(SimError::Policy(file.diagnostics(errors))),
    }
}
