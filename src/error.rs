//! The top-level error of a command, and the exit status each maps to.

use std::path::PathBuf;

use crate::config::Diagnostics;
use crate::exit::ExitStatus;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario or policy file is invalid; each diagnostic has its position.
    #[error("{0}")]
    Config(#[from] Diagnostics),

    #[error(transparent)]
    PlanTooLarge(#[from] crate::plan::PlanTooLarge),

    #[error("{0}")]
    Usage(String),

    #[error("cannot create run directory {path}: {source}")]
    RunDirectory { path: PathBuf, source: std::io::Error },

    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),

    #[error(transparent)]
    Simulator(#[from] crate::sim::SimError),

    #[error("{0}")]
    Run(String),
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config(_) | Error::PlanTooLarge(_) | Error::Usage(_) => ExitStatus::Usage,
            // A policy file that is invalid or requests a non-loopback
            // address without allowing it is bad input, like a bad scenario.
            Error::Simulator(crate::sim::SimError::Policy(_) | crate::sim::SimError::NonLoopbackListen { .. }) => {
                ExitStatus::Usage
            }
            Error::RunDirectory { .. } | Error::Write { .. } | Error::Dns(_) | Error::Simulator(_) | Error::Run(_) => {
                ExitStatus::RunFailed
            }
        }
    }
}
