//! The run record written as `run.json`: the plan, every attempt with its
//! transcript, and every message with its final outcome. `gate` and `report`
//! read it back, so every field is plain data.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::classify::Classification;
use crate::collect::Placement;
use crate::gate::Verdict;
use crate::plan::PlannedMessage;
use crate::scenario::Role;
use crate::smtp::record::{Failure, Outcome, Reply, Step, Transaction};
use crate::verify::CopyVerdicts;

/// Bumped when a field changes meaning or is removed.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub tool: String,
    pub run_id: String,
    pub scenario: ScenarioInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// True when the run was stopped (Ctrl-C) before every message reached a
    /// final outcome; the record then contains what was done until then.
    pub interrupted: bool,
    pub sender: SenderInfo,
    pub paths: Vec<PathInfo>,
    pub seeds: Vec<String>,
    pub dkim: Vec<DkimInfo>,
    pub delivery: DeliveryInfo,
    pub dns: DnsInfo,
    pub simulator: Option<SimulatorInfo>,
    pub plan: Vec<PlannedMessage>,
    pub messages: Vec<MessageRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub totals: Totals,
    /// Seed domain to the provider behind it, from its MX hosts and from
    /// the wording of the replies its servers sent.
    pub seed_providers: BTreeMap<String, String>,
    /// The DNS and identity checks made before sending; `None` when they
    /// were skipped.
    #[serde(default)]
    pub preflight: Option<crate::preflight::Preflight>,
    /// Every delivered copy found, with the verdicts read from it.
    pub copies: Vec<CopyRecord>,
    /// Mailboxes that could not be read, with the error.
    pub collection_errors: BTreeMap<String, String>,
    /// The checkpoint as `run` evaluated it; `gate` recomputes it.
    pub verdict: Option<Verdict>,
    pub context: ContextInfo,
}

/// Attempts by number and copies by message sequence, built once so that
/// per-message lookups stay constant-time on large runs.
pub struct RecordIndex<'a> {
    attempts: BTreeMap<u32, &'a AttemptRecord>,
    copies: BTreeMap<u32, &'a CopyRecord>,
}

impl<'a> RecordIndex<'a> {
    pub fn new(record: &'a RunRecord) -> Self {
        Self {
            attempts: record.attempts.iter().map(|attempt| (attempt.number, attempt)).collect(),
            copies: record.copies.iter().map(|copy| (copy.sequence, copy)).collect(),
        }
    }

    /// Returns the message's last attempt, whose outcome is the message's.
    pub fn last_attempt(&self, message: &MessageRecord) -> Option<&'a AttemptRecord> {
        message.attempts.last().and_then(|number| self.attempts.get(number).copied())
    }

    pub fn copy(&self, sequence: u32) -> Option<&'a CopyRecord> {
        self.copies.get(&sequence).copied()
    }
}

/// One delivered copy found in a seed mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyRecord {
    pub sequence: u32,
    pub token: String,
    pub mailbox: String,
    pub folder: String,
    pub placement: Placement,
    /// The copy's source: a Maildir file, or an IMAP folder and UID.
    pub location: String,
    /// The copy saved in the run directory, relative to it.
    pub saved_as: PathBuf,
    pub found_at: DateTime<Utc>,
    pub size: u64,
    pub verdicts: Option<CopyVerdicts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub max_messages: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SenderInfo {
    pub from: String,
    pub mail_from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathInfo {
    pub name: String,
    pub pool: String,
    pub source_ip: Option<IpAddr>,
    pub helo: String,
    /// `smtp://host:port` for a relay path.
    pub relay: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DkimInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub starttls: String,
    pub rate_per_minute: Option<u32>,
    pub retry_seconds: Vec<u64>,
    /// Domain to `host:port`, both the scenario's routes and the simulator's.
    pub routes: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsInfo {
    pub zones: Vec<PathBuf>,
    pub nameservers: Vec<SocketAddr>,
    /// The in-process server that served the zones, when there were any.
    pub local_server: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimulatorInfo {
    pub address: SocketAddr,
    pub hostname: String,
    /// The Maildir root the simulator delivered into.
    pub maildir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextInfo {
    pub remediation: Vec<String>,
    pub current_rate_limit: Option<String>,
    pub contact: Option<String>,
    pub ticket: Option<String>,
    pub notes: Vec<String>,
}

/// One planned message and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    pub sequence: u32,
    pub stream: String,
    pub role: Role,
    pub path: String,
    pub pool: String,
    pub seed: String,
    /// The tracking token, also in the `X-Mailcanary-Token` header and the
    /// Message-ID, by which the delivered copy is found.
    pub token: Option<String>,
    pub message_id: Option<String>,
    pub size: Option<u64>,
    /// `d=` and `s=` of each DKIM signature added, as `domain/selector`.
    pub signatures: Vec<String>,
    /// Numbers of this message's attempts, in order.
    pub attempts: Vec<u32>,
    /// The last attempt's outcome; `None` when the message was never sent.
    pub outcome: Option<Outcome>,
    /// Accepted after at least one deferred or failed attempt.
    pub cleared_after_retry: bool,
    /// The folder kind the delivered copy landed in; `None` when the seed has no mailbox
    /// to read or the message was not accepted.
    pub placement: Option<Placement>,
    /// Why no delivered copy was found or looked for: the message was
    /// deferred, rejected, failed or never sent, was accepted but not
    /// delivered in time, or its seed has no readable mailbox.
    pub missing_reason: Option<String>,
    /// The error that kept the message from being composed or signed.
    pub error: Option<String>,
}

/// One SMTP attempt for one message on one path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based, in the order attempts started.
    pub number: u32,
    pub sequence: u32,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub try_number: u32,
    pub stream: String,
    pub role: Role,
    pub path: String,
    pub pool: String,
    pub source_ip: Option<IpAddr>,
    pub helo: String,
    pub seed: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// The reply that decided the outcome, repeated from the transaction.
    pub reply: Option<Reply>,
    pub failure: Option<Failure>,
    /// The decisive reply read like a postmaster: provider, reason, the IP
    /// it names and its lookup URL.
    pub classification: Option<Classification>,
    /// Set when the reply names another IP than the path's source IP.
    pub ip_mismatch: Option<String>,
    /// Every 4xx or 5xx reply of the attempt, decisive or not (a refused
    /// STARTTLS, a failover host's deferral), each with its reading.
    #[serde(default)]
    pub negative_replies: Vec<ReplyReading>,
    /// Every connection made for this attempt: MX hosts that could not be
    /// reached first, then the one that replied.
    pub transactions: Vec<Transaction>,
    /// The transcript file, relative to the run directory.
    pub transcript: PathBuf,
}

/// One negative reply and its classification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyReading {
    /// Index into the attempt's `transactions`.
    pub transaction: usize,
    /// Index into that transaction's `exchanges`.
    pub exchange: usize,
    pub step: Step,
    pub classification: Classification,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub planned: u32,
    pub attempts: u32,
    pub accepted: u32,
    pub deferred: u32,
    pub rejected: u32,
    pub failed: u32,
    pub not_sent: u32,
    pub cleared_after_retry: u32,
}

impl Totals {
    /// Counts messages by their final outcome, with their attempts.
    pub fn from_messages<'a>(messages: impl IntoIterator<Item = &'a MessageRecord>) -> Totals {
        let mut totals = Totals::default();
        for message in messages {
            totals.planned += 1;
            totals.attempts += message.attempts.len() as u32;
            match message.outcome {
                Some(Outcome::Accepted) => totals.accepted += 1,
                Some(Outcome::Deferred) => totals.deferred += 1,
                Some(Outcome::Rejected) => totals.rejected += 1,
                Some(Outcome::Failed) => totals.failed += 1,
                None => totals.not_sent += 1,
            }
            if message.cleared_after_retry {
                totals.cleared_after_retry += 1;
            }
        }
        totals
    }
}
