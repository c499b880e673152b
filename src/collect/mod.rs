//! Collection: finding each accepted message's delivered copy in the seed
//! mailboxes by its tracking token, and where it landed (inbox or spam).
//!
//! A mailbox kind implements one operation, "find the copies of these
//! tokens", so Maildir and IMAP sit side by side behind [`MailboxReader`].

pub mod imap;
pub mod maildir;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The folder kind a delivered copy landed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    Inbox,
    /// A spam, junk or quarantine folder.
    Spam,
    Missing,
}

/// One copy found in a mailbox.
#[derive(Debug, Clone)]
pub struct FoundCopy {
    pub token: String,
    /// The folder as the mailbox names it: `INBOX`, `Junk`, …
    pub folder: String,
    pub placement: Placement,
    /// The copy's source: a file path for Maildir, an IMAP URL
    /// (`imap://host:port/FOLDER;UID=n`) for IMAP.
    pub location: String,
    pub bytes: Vec<u8>,
    pub found_at: DateTime<Utc>,
}

/// A failure to read a mailbox at all, as opposed to a copy not found.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read Maildir {path}: {source}; check that the directory exists and is readable")]
    Maildir { path: PathBuf, source: std::io::Error },

    #[error(
        "mailbox {mailbox}: no IMAP password: {problem}; set the password there or change password_env/password_file"
    )]
    ImapPassword { mailbox: String, problem: String },

    #[error(
        "mailbox {mailbox}: cannot connect to IMAP server {server}: {detail}; check the imap URL and that the server accepts connections from this host"
    )]
    ImapConnect { mailbox: String, server: String, detail: String },

    #[error(
        "mailbox {mailbox}: TLS with IMAP server {server} failed: {detail}; set ca_file to the CA of the server's certificate, or check the TLS mode (imaps:// is implicit TLS, imap:// takes tls = \"starttls\" or \"none\")"
    )]
    ImapTls { mailbox: String, server: String, detail: String },

    #[error("mailbox {mailbox}: IMAP login on {server} failed: {detail}; check username and {password_source}")]
    ImapLogin { mailbox: String, server: String, detail: String, password_source: String },

    #[error("mailbox {mailbox}: IMAP {action} on {server} failed: {detail}; the server's log may say why")]
    Imap { mailbox: String, server: String, action: String, detail: String },
}

/// A mailbox kind. `find` returns the copies among `tokens` that it contains
/// now; callers poll it until every token is found or time runs out.
pub enum MailboxReader {
    Maildir(maildir::MaildirReader),
    /// Keeps its IMAP connection between calls to `find`.
    Imap(Box<imap::ImapReader>),
}

impl MailboxReader {
    pub async fn find(&mut self, tokens: &BTreeSet<String>) -> Result<Vec<FoundCopy>, CollectError> {
        match self {
            MailboxReader::Maildir(reader) => {
                let reader = reader.clone();
                let tokens = tokens.clone();
                // Directory scans block, so they run off the async workers.
                tokio::task::spawn_blocking(move || reader.find(&tokens))
                    .await
                    .expect("the Maildir scan does not panic")
            }
            MailboxReader::Imap(reader) => reader.find(tokens).await,
        }
    }

    /// Ends the reader's session: LOGOUT for IMAP, nothing for Maildir.
    pub async fn close(&mut self) {
        match self {
            MailboxReader::Maildir(_) => {}
            MailboxReader::Imap(reader) => reader.logout().await,
        }
    }
}

/// Polls every mailbox until each expected token is found or `timeout`
/// passes. Returns the copies found, keyed by token, and the mailboxes that
/// could not be read, each with its error. A failing mailbox does not stop
/// the others. Every reader is closed before returning.
pub async fn collect(
    mailboxes: &mut BTreeMap<String, (MailboxReader, BTreeSet<String>)>,
    timeout: Duration,
    poll_interval: Duration,
) -> (BTreeMap<String, FoundCopy>, BTreeMap<String, String>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut found: BTreeMap<String, FoundCopy> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for (name, (reader, tokens)) in mailboxes.iter_mut() {
            let missing: BTreeSet<String> =
                tokens.iter().filter(|token| !found.contains_key(*token)).cloned().collect();
            if missing.is_empty() || errors.contains_key(name) {
                continue;
            }
            match reader.find(&missing).await {
                Ok(copies) => {
                    for copy in copies {
                        tracing::debug!(mailbox = %name, token = %copy.token, folder = %copy.folder, "copy found");
                        found.entry(copy.token.clone()).or_insert(copy);
                    }
                }
                Err(error) => {
                    tracing::error!(mailbox = %name, %error, "mailbox cannot be read; its copies count as not collected");
                    errors.insert(name.clone(), error.to_string());
                }
            }
        }
        let outstanding = mailboxes
            .iter()
            .filter(|(name, _)| !errors.contains_key(*name))
            .flat_map(|(_, (_, tokens))| tokens.iter())
            .filter(|token| !found.contains_key(*token))
            .count();
        if outstanding == 0 || tokio::time::Instant::now() + poll_interval > deadline {
            if outstanding > 0 {
                tracing::warn!(outstanding, "collection timed out with copies still missing");
            }
            for (reader, _) in mailboxes.values_mut() {
                reader.close().await;
            }
            return (found, errors);
        }
        tokio::time::sleep(poll_interval).await;
    }
}
