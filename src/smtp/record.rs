//! The recorded form of an SMTP attempt: replies with their raw lines, each
//! command and reply with its UTC time, TLS details and the outcome. These
//! values are written verbatim into `run.json`.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One SMTP reply as the server sent it (RFC 5321 section 4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The three-digit reply code, absent when the text carried none (a log
    /// line that kept only the enhanced code, for example).
    pub code: Option<u16>,
    /// The full enhanced status code (RFC 3463) as written, `4.7.650` included.
    pub enhanced: Option<String>,
    /// Every line as received, without the trailing CRLF.
    pub lines: Vec<String>,
}

/// The protocol step an exchange belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    Starttls,
    TlsHandshake,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Rset,
    Quit,
}

/// One command sent and the reply it drew, or a reply read without a command
/// (the greeting), or a connection event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub step: Step,
    /// The command line as sent, with secrets masked. The message body sent
    /// after DATA is not repeated here; `size` records its length instead.
    pub command: Option<String>,
    /// UTC time the command was written (or the step began).
    pub sent_at: DateTime<Utc>,
    pub reply: Option<Reply>,
    /// UTC time the last line of the reply arrived.
    pub replied_at: Option<DateTime<Utc>>,
    /// Bytes of message content written, for the end-of-data step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The way an attempt ended (the terms of the field: a 2xx after DATA is
/// accepted, 4xx deferred, 5xx rejected, no reply at all failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Accepted,
    Deferred,
    Rejected,
    Failed,
}

/// The reason an attempt failed without a decisive reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Failure {
    /// No MX or address record could be found for the recipient domain.
    Dns {
        detail: String,
    },
    /// The source IP could not be bound (not configured on this host).
    Bind {
        source_ip: IpAddr,
        detail: String,
    },
    ConnectionRefused {
        detail: String,
    },
    /// No reply within the step's timeout.
    TimedOut {
        step: Step,
        after_ms: u64,
    },
    /// STARTTLS was required, but the server did not offer it.
    StarttlsNotOffered,
    Tls {
        detail: String,
    },
    /// The server closed the connection before the transaction ended.
    ConnectionDropped {
        step: Step,
    },
    /// The server sent something that is not an SMTP reply.
    Protocol {
        step: Step,
        detail: String,
    },
    Io {
        step: Step,
        detail: String,
    },
}

/// TLS parameters negotiated after STARTTLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// The peer certificate's subject, in RFC 4514 form.
    pub peer_subject: Option<String>,
    pub peer_issuer: Option<String>,
    /// Whether the certificate chain and name were verified against the trust
    /// roots. Opportunistic STARTTLS to MX hosts proceeds without it, as MTAs do.
    pub verified: bool,
}

/// One SMTP transaction for one message to one recipient on one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The MX (or routed) host name that was connected to.
    pub mx_host: String,
    pub server: SocketAddr,
    /// The local address the connection used, the bound source IP included.
    pub local: Option<SocketAddr>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub exchanges: Vec<Exchange>,
    pub tls: Option<TlsInfo>,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    /// Index in `exchanges` of the reply that decided the outcome.
    pub decisive: Option<usize>,
}

impl std::fmt::Display for Step {
    /// Writes the step as its serde name does, `end-of-data` for example.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Step::Connect => "connect",
            Step::Greeting => "greeting",
            Step::Ehlo => "ehlo",
            Step::Helo => "helo",
            Step::Starttls => "starttls",
            Step::TlsHandshake => "tls-handshake",
            Step::Mail => "mail",
            Step::Rcpt => "rcpt",
            Step::Data => "data",
            Step::EndOfData => "end-of-data",
            Step::Rset => "rset",
            Step::Quit => "quit",
        };
        f.write_str(name)
    }
}

impl std::fmt::Display for Failure {
    /// Writes the failure as one sentence for transcripts and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Dns { detail } => write!(f, "DNS lookup failed: {detail}"),
            Failure::Bind { source_ip, detail } => {
                write!(f, "source IP {source_ip} not usable: {detail}")
            }
            Failure::ConnectionRefused { detail } => write!(f, "connection refused: {detail}"),
            Failure::TimedOut { step, after_ms } => {
                write!(f, "timed out after {after_ms} ms at the {step} step")
            }
            Failure::StarttlsNotOffered => f.write_str("STARTTLS required, but the server did not offer it"),
            Failure::Tls { detail } => write!(f, "TLS failed: {detail}"),
            Failure::ConnectionDropped { step } => {
                write!(f, "the server closed the connection at the {step} step")
            }
            Failure::Protocol { step, detail } => {
                write!(f, "protocol error at the {step} step: {detail}")
            }
            Failure::Io { step, detail } => write!(f, "I/O error at the {step} step: {detail}"),
        }
    }
}
