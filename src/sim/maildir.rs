//! Delivery into Maildir folders: one Maildir per recipient address, with the
//! Junk folder as a Maildir++ subfolder (`.Junk/`), the layout that Dovecot
//! and Courier read.
//!
//! A message is written into `tmp/` under a unique name, synced, then renamed
//! into `new/`, so a reader never sees a partial file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::policy::Folder;

/// Deliveries made by this process, the `Q` part of a unique name. It is
/// process-wide so that two simulators in one process never pick the same
/// name in the same microsecond.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The root under which each recipient gets `<root>/<address>/`.
#[derive(Debug, Clone)]
pub(crate) struct MaildirRoot {
    root: PathBuf,
    /// Host part of unique names, with `/` and `:` escaped as the Maildir
    /// format requires.
    host: String,
    /// Folders already created by this simulator, so a delivery costs no
    /// `mkdir` calls once its folder exists.
    created: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl MaildirRoot {
    /// Uses `hostname` in place of the machine's name in unique file names.
    pub(crate) fn new(root: PathBuf, hostname: &str) -> Self {
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        Self { root, host, created: Default::default() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// Returns the Maildir of one recipient. The caller has checked that
    /// `address` contains no path separator.
    pub(crate) fn mailbox(&self, address: &str) -> PathBuf {
        self.root.join(address)
    }

    /// Writes `message` into the recipient's folder and returns the path of
    /// the delivered file under `new/`. Blocking: call it off the async
    /// runtime's worker threads.
    pub(crate) fn deliver(&self, address: &str, folder: Folder, message: &[u8]) -> io::Result<PathBuf> {
        let mailbox = self.mailbox(address);
        let folder_dir = match folder {
            Folder::Inbox => mailbox.clone(),
            Folder::Junk => mailbox.join(".Junk"),
        };
        self.ensure_folder(&mailbox, &folder_dir, folder, false)?;

        let name = self.unique_name();
        let temporary = folder_dir.join("tmp").join(&name);
        let delivered = folder_dir.join("new").join(&name);
        let mut written = write_synced(&temporary, message);
        if written.as_ref().is_err_and(|error| error.kind() == io::ErrorKind::NotFound) {
            // The folder was removed since it was created; make it again once.
            self.ensure_folder(&mailbox, &folder_dir, folder, true)?;
            written = write_synced(&temporary, message);
        }
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        if let Err(error) = fs::rename(&temporary, &delivered) {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        Ok(delivered)
    }

    /// Creates the folder's `cur`, `new` and `tmp` unless this simulator
    /// already did; `again` creates them in any case.
    fn ensure_folder(&self, mailbox: &Path, folder_dir: &Path, folder: Folder, again: bool) -> io::Result<()> {
        let mut created = self.created.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !again && created.contains(folder_dir) {
            return Ok(());
        }
        create_maildir(folder_dir)?;
        if folder == Folder::Junk {
            // Maildir++ marks a subfolder with an empty `maildirfolder` file.
            create_maildir(mailbox)?;
            fs::OpenOptions::new().create(true).append(true).open(folder_dir.join("maildirfolder"))?;
        }
        created.insert(folder_dir.to_path_buf());
        Ok(())
    }

    /// `<seconds>.M<microseconds>P<pid>Q<deliveries>.<host>`, the unique name
    /// form of the Maildir specification.
    fn unique_name(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let count = DELIVERIES.fetch_add(1, Ordering::Relaxed);
        format!("{}.M{}P{}Q{count}.{}", now.as_secs(), now.subsec_micros(), std::process::id(), self.host)
    }
}

fn create_maildir(dir: &Path) -> io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

fn write_synced(path: &Path, message: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(message)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_writes_into_new() {
        let dir = tempfile::tempdir().unwrap();
        let root = MaildirRoot::new(dir.path().to_path_buf(), "mx.example.test");
        let path = root.deliver("seed@customer-a.example.net", Folder::Inbox, b"Subject: x\r\n\r\nbody\r\n").unwrap();

        let mailbox = dir.path().join("seed@customer-a.example.net");
        assert_eq!(path.parent().unwrap(), mailbox.join("new"));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        assert!(mailbox.join("cur").is_dir());
        assert_eq!(fs::read_dir(mailbox.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn junk_is_a_maildir_plus_plus_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = MaildirRoot::new(dir.path().to_path_buf(), "mx.example.test");
        let path = root.deliver("seed@customer-a.example.net", Folder::Junk, b"x\r\n").unwrap();

        let junk = dir.path().join("seed@customer-a.example.net/.Junk");
        assert_eq!(path.parent().unwrap(), junk.join("new"));
        assert!(junk.join("maildirfolder").is_file());
        assert!(dir.path().join("seed@customer-a.example.net/new").is_dir());
    }

    #[test]
    fn removed_folder_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = MaildirRoot::new(dir.path().to_path_buf(), "mx.example.test");
        root.deliver("seed@customer-a.example.net", Folder::Inbox, b"first\r\n").unwrap();
        fs::remove_dir_all(dir.path().join("seed@customer-a.example.net")).unwrap();

        let path = root.deliver("seed@customer-a.example.net", Folder::Inbox, b"second\r\n").unwrap();
        assert_eq!(fs::read(path).unwrap(), b"second\r\n");
    }

    #[test]
    fn unique_names_differ() {
        let root = MaildirRoot::new(PathBuf::from("/unused"), "mx:sim/test");
        let first = root.unique_name();
        let second = root.unique_name();
        assert_ne!(first, second);
        assert!(first.ends_with(".mx\\072sim\\057test"), "{first}");
    }
}
