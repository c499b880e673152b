//! Reading a Maildir (and its Maildir++ subfolders such as `.Junk`) for the
//! copies of given tracking tokens. Only the header block of each file is
//! read until a token matches.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{CollectError, FoundCopy, Placement};
use crate::message::{TOKEN_HEADER, TrackingToken};

/// The most of a file read while looking for the token headers.
const HEADER_LIMIT: usize = 256 * 1024;

/// One or more Maildirs read as one mailbox.
#[derive(Debug, Clone)]
pub struct MaildirReader {
    pub roots: Vec<PathBuf>,
    /// Folder names (compared without case) that count as spam placement.
    pub spam_folders: Vec<String>,
}

impl MaildirReader {
    /// Scans every folder of every root for files carrying one of `tokens`
    /// in the tracking header or the Message-ID. A root that does not exist
    /// yet contains nothing; any other read failure is an error.
    pub fn find(&self, tokens: &BTreeSet<String>) -> Result<Vec<FoundCopy>, CollectError> {
        let mut found = Vec::new();
        for root in &self.roots {
            for (folder, directory) in folders(root)? {
                for sub in ["new", "cur"] {
                    let dir = directory.join(sub);
                    let entries = match fs::read_dir(&dir) {
                        Ok(entries) => entries,
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(source) => return Err(CollectError::Maildir { path: dir, source }),
                    };
                    for entry in entries {
                        let entry = entry.map_err(|source| CollectError::Maildir { path: dir.clone(), source })?;
                        let path = entry.path();
                        let Some(token) = token_of(&path).filter(|token| tokens.contains(token)) else { continue };
                        let bytes =
                            fs::read(&path).map_err(|source| CollectError::Maildir { path: path.clone(), source })?;
                        found.push(FoundCopy {
                            token,
                            placement: self.placement(&folder),
                            folder: folder.clone(),
                            location: path.display().to_string(),
                            bytes,
                            found_at: Utc::now(),
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    fn placement(&self, folder: &str) -> Placement {
        let leaf = folder.rsplit(['.', '/']).next().unwrap_or(folder);
        if self.spam_folders.iter().any(|spam| spam.eq_ignore_ascii_case(folder) || spam.eq_ignore_ascii_case(leaf)) {
            Placement::Spam
        } else {
            Placement::Inbox
        }
    }
}

/// Lists the INBOX (the root) and every Maildir++ subfolder (`.Name`).
fn folders(root: &Path) -> Result<Vec<(String, PathBuf)>, CollectError> {
    let mut folders = vec![("INBOX".to_string(), root.to_path_buf())];
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CollectError::Maildir { path: root.to_path_buf(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| CollectError::Maildir { path: root.to_path_buf(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(folder) = name.strip_prefix('.')
            && !folder.is_empty()
            && entry.path().is_dir()
        {
            folders.push((folder.to_string(), entry.path()));
        }
    }
    folders.sort();
    Ok(folders)
}

/// Reads the header block of a message file and returns its tracking token,
/// from the tracking header or, when a gateway removed that, the Message-ID.
fn token_of(path: &Path) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    let mut head = Vec::with_capacity(8192);
    let mut buffer = [0u8; 8192];
    loop {
        let read = file.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        // Only the bytes around the new read can complete the blank line.
        let start = head.len().saturating_sub(3);
        head.extend_from_slice(&buffer[..read]);
        let tail = &head[start..];
        if find(tail, b"\r\n\r\n").is_some() || find(tail, b"\n\n").is_some() || head.len() >= HEADER_LIMIT {
            break;
        }
    }

    let mut from_message_id = None;
    for (name, value) in crate::auth::parse_message_headers(&head) {
        let value = crate::auth::unfold(&value);
        if name.eq_ignore_ascii_case(TOKEN_HEADER) {
            if let Some(token) = TrackingToken::parse(&value) {
                return Some(token.as_str().to_string());
            }
        } else if name.eq_ignore_ascii_case("Message-ID") && from_message_id.is_none() {
            from_message_id = TrackingToken::from_message_id(&value).map(|token| token.as_str().to_string());
        }
    }
    from_message_id
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn finds_tokens_in_inbox_and_junk() {
        let root = tempfile::tempdir().unwrap();
        let inbox_token = TrackingToken::generate();
        let junk_token = TrackingToken::generate();
        let other_token = TrackingToken::generate();
        write(
            &root.path().join("new"),
            "1",
            &format!("From: a@example.com\r\n{TOKEN_HEADER}: {}\r\n\r\nbody\r\n", inbox_token.as_str()),
        );
        write(
            &root.path().join(".Junk/cur"),
            "2",
            &format!("Message-ID: <{}>\r\n\r\nbody\r\n", junk_token.message_id("example.com")),
        );
        write(&root.path().join("cur"), "3", &format!("{TOKEN_HEADER}: {}\r\n\r\nbody\r\n", other_token.as_str()));

        let reader = MaildirReader { roots: vec![root.path().to_path_buf()], spam_folders: vec!["Junk".into()] };
        let wanted: BTreeSet<String> = [inbox_token.as_str().to_string(), junk_token.as_str().to_string()].into();
        let mut found = reader.find(&wanted).unwrap();
        found.sort_by(|a, b| a.folder.cmp(&b.folder));

        assert_eq!(found.len(), 2, "the unrequested token is not returned");
        assert_eq!(found[0].folder, "INBOX");
        assert_eq!(found[0].placement, Placement::Inbox);
        assert_eq!(found[0].token, inbox_token.as_str());
        assert_eq!(found[1].folder, "Junk");
        assert_eq!(found[1].placement, Placement::Spam);
        assert_eq!(found[1].token, junk_token.as_str());
    }

    #[test]
    fn folded_token_header_is_read() {
        let root = tempfile::tempdir().unwrap();
        let token = TrackingToken::generate();
        write(&root.path().join("new"), "1", &format!("{TOKEN_HEADER}:\n {}\n\nbody\n", token.as_str()));
        let reader = MaildirReader { roots: vec![root.path().to_path_buf()], spam_folders: vec![] };
        let found = reader.find(&[token.as_str().to_string()].into()).unwrap();
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn missing_root_holds_nothing() {
        let reader = MaildirReader { roots: vec![PathBuf::from("/nonexistent/maildir")], spam_folders: vec![] };
        let found = reader.find(&["mcx".to_string()].into()).unwrap();
        assert!(found.is_empty());
    }
}
