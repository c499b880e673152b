//! The run's collection step: look for every accepted message's copy in its
//! seed's mailbox, save it under `received/`, and verify it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::record::{CopyRecord, MessageRecord};
use crate::auth::select::TrustedIds;
use crate::collect::imap::ImapReader;
use crate::collect::maildir::MaildirReader;
use crate::collect::{self, MailboxReader, Placement};
use crate::dns::Dns;
use crate::error::Error;
use crate::scenario::{Mailbox, Scenario};
use crate::smtp::record::Outcome;
use crate::verify::{Envelope, verify_copy};

/// The mailbox name under which the simulator's Maildirs are read.
pub const SIMULATOR_MAILBOX: &str = "simulator";

/// Folder names that count as spam when a mailbox lists none. IMAP folders
/// marked `\Junk` count as spam as well.
const DEFAULT_SPAM_FOLDERS: [&str; 4] = ["Junk", "Spam", "Quarantine", "Bulk"];

/// The result of the collection step.
pub struct Collected {
    pub copies: Vec<CopyRecord>,
    pub errors: BTreeMap<String, String>,
}

/// Finds, saves and verifies the copies of every accepted message, and sets
/// each message's placement.
pub async fn collect_and_verify(
    scenario: &Scenario,
    run_directory: &Path,
    simulator: Option<(&Path, &str)>,
    dns: &Dns,
    messages: &mut [MessageRecord],
) -> Result<Collected, Error> {
    // The mailbox that receives each seed's copies.
    let mailbox_of = |seed: &str| -> Option<String> {
        let declared =
            scenario.seeds.iter().find(|candidate| candidate.address == seed).and_then(|seed| seed.mailbox.clone());
        declared.or_else(|| simulator.map(|_| SIMULATOR_MAILBOX.to_string()))
    };

    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in messages.iter() {
        if message.outcome != Some(Outcome::Accepted) {
            continue;
        }
        if let (Some(token), Some(mailbox)) = (&message.token, mailbox_of(&message.seed)) {
            wanted.entry(mailbox).or_default().insert(token.clone());
        }
    }

    let mut readers: BTreeMap<String, (MailboxReader, BTreeSet<String>)> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (name, tokens) in wanted {
        match reader_for(scenario, &name, simulator) {
            Ok(reader) => {
                readers.insert(name, (reader, tokens));
            }
            Err(message) => {
                tracing::error!(mailbox = %name, %message, "mailbox cannot be read");
                errors.insert(name, message);
            }
        }
    }
    let found = if readers.is_empty() {
        BTreeMap::new()
    } else {
        tracing::info!(mailboxes = readers.len(), "collecting delivered copies");
        let (found, read_errors) =
            collect::collect(&mut readers, scenario.collect.timeout, scenario.collect.poll_interval).await;
        errors.extend(read_errors);
        found
    };

    let received = run_directory.join("received");
    std::fs::create_dir_all(&received).map_err(|source| Error::Write { path: received.clone(), source })?;
    let authenticator = dns.authenticator();
    let mut copies = Vec::new();
    for message in messages.iter_mut() {
        let not_accepted = match message.outcome {
            Some(Outcome::Accepted) => None,
            Some(Outcome::Deferred) => Some("deferred, so never delivered"),
            Some(Outcome::Rejected) => Some("rejected, so never delivered"),
            Some(Outcome::Failed) => Some("the attempt failed without a reply, so never delivered"),
            None => Some("never sent"),
        };
        if let Some(reason) = not_accepted {
            message.missing_reason = Some(reason.to_string());
            continue;
        }
        let Some(mailbox) = mailbox_of(&message.seed) else {
            message.missing_reason =
                Some("the seed has no mailbox to read, so placement and authentication were not checked".to_string());
            continue;
        };
        if let Some(error) = errors.get(&mailbox) {
            message.missing_reason = Some(format!("mailbox {mailbox} could not be read: {error}"));
            continue;
        }
        let Some(copy) = message.token.as_ref().and_then(|token| found.get(token)) else {
            message.placement = Some(Placement::Missing);
            message.missing_reason = Some(format!(
                "accepted, but no copy reached mailbox {mailbox} within {} s: held, quarantined or dropped after acceptance",
                scenario.collect.timeout.as_secs()
            ));
            continue;
        };
        message.placement = Some(copy.placement);

        let saved_as = PathBuf::from("received").join(format!("m{:04}-{}.eml", message.sequence, copy.token));
        let path = run_directory.join(&saved_as);
        std::fs::write(&path, &copy.bytes).map_err(|source| Error::Write { path, source })?;

        let path_config = scenario.path_by_name(&message.path);
        let envelope = Envelope {
            client_ip: path_config.and_then(|path| path.source_ip),
            helo: path_config.map_or("", |path| path.helo.as_str()),
            mail_from: &scenario.sender.mail_from,
        };
        let trusted = trusted_ids(scenario, &mailbox, simulator);
        let verdicts = verify_copy(&authenticator, &copy.bytes, &envelope, &trusted).await;
        copies.push(CopyRecord {
            sequence: message.sequence,
            token: copy.token.clone(),
            mailbox,
            folder: copy.folder.clone(),
            placement: copy.placement,
            location: copy.location.clone(),
            saved_as,
            found_at: copy.found_at,
            size: copy.bytes.len() as u64,
            verdicts: Some(verdicts),
        });
    }
    Ok(Collected { copies, errors })
}

fn reader_for(scenario: &Scenario, name: &str, simulator: Option<(&Path, &str)>) -> Result<MailboxReader, String> {
    if name == SIMULATOR_MAILBOX && !scenario.mailboxes.contains_key(name) {
        let (root, _) = simulator.expect("the simulator mailbox exists only with a simulator");
        let roots = scenario.seeds.iter().map(|seed| root.join(&seed.address)).collect();
        return Ok(MailboxReader::Maildir(MaildirReader { roots, spam_folders: vec!["Junk".into()] }));
    }
    match scenario.mailboxes.get(name) {
        Some(Mailbox::Maildir { root, spam_folders, .. }) => {
            let spam_folders = if spam_folders.is_empty() {
                DEFAULT_SPAM_FOLDERS.iter().map(|folder| folder.to_string()).collect()
            } else {
                spam_folders.clone()
            };
            // The root is read as a Maildir, and so is `<root>/<seed address>`
            // for each seed of this mailbox: the layout the simulator writes.
            let mut roots = vec![root.clone()];
            for seed in scenario.seeds.iter().filter(|seed| seed.mailbox.as_deref() == Some(name)) {
                roots.push(root.join(&seed.address));
            }
            Ok(MailboxReader::Maildir(MaildirReader { roots, spam_folders }))
        }
        Some(Mailbox::Imap(imap)) => {
            let spam_folders = if imap.spam_folders.is_empty() {
                DEFAULT_SPAM_FOLDERS.iter().map(|folder| folder.to_string()).collect()
            } else {
                imap.spam_folders.clone()
            };
            Ok(MailboxReader::Imap(Box::new(ImapReader::new(name, imap.clone(), spam_folders))))
        }
        None => Err(format!("mailbox {name:?} is not declared")),
    }
}

fn trusted_ids(scenario: &Scenario, mailbox: &str, simulator: Option<(&Path, &str)>) -> TrustedIds {
    let configured = match scenario.mailboxes.get(mailbox) {
        Some(Mailbox::Maildir { authserv_id, .. }) => authserv_id.clone(),
        Some(Mailbox::Imap(imap)) => imap.authserv_id.clone(),
        None => None,
    };
    let mut ids = TrustedIds::default();
    match (configured, simulator) {
        (Some(id), _) => ids.authserv_ids.push(id),
        (None, Some((_, hostname))) if mailbox == SIMULATOR_MAILBOX => {
            ids.authserv_ids.push(hostname.to_string());
            ids.gateway_hosts.push(hostname.to_string());
        }
        (None, _) => {}
    }
    ids
}
