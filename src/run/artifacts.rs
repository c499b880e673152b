//! The run directory: `run.json`, the `events.jsonl` journal written before
//! and after each send, and one transcript file per attempt.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::record::{AttemptRecord, RunRecord};
use crate::error::Error;

pub struct RunDirectory {
    pub id: String,
    pub path: PathBuf,
    journal: File,
}

impl RunDirectory {
    /// Creates `<runs_dir>/<UTC timestamp>-<slug>`, adding `-2`, `-3`, …
    /// when a run of the same scenario started in the same second.
    pub fn create(runs_dir: &Path, slug: &str, now: DateTime<Utc>) -> Result<RunDirectory, Error> {
        fs::create_dir_all(runs_dir).map_err(|source| Error::RunDirectory { path: runs_dir.to_path_buf(), source })?;
        let stamp = now.format("%Y%m%dT%H%M%SZ");
        let mut suffix = 1;
        let (id, path) = loop {
            let id = if suffix == 1 { format!("{stamp}-{slug}") } else { format!("{stamp}-{slug}-{suffix}") };
            let path = runs_dir.join(&id);
            // create_dir (not create_dir_all) fails when the directory exists,
            // so two runs never share one.
            match fs::create_dir(&path) {
                Ok(()) => break (id, path),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && suffix < 1000 => suffix += 1,
                Err(source) => return Err(Error::RunDirectory { path, source }),
            }
        };
        let transcripts = path.join("transcripts");
        fs::create_dir(&transcripts).map_err(|source| Error::RunDirectory { path: transcripts, source })?;
        let journal_path = path.join("events.jsonl");
        let journal = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&journal_path)
            .map_err(|source| Error::RunDirectory { path: journal_path, source })?;
        Ok(RunDirectory { id, path, journal })
    }

    /// Appends one event to the journal and flushes it, so a crash or Ctrl-C
    /// loses no event already written.
    pub fn journal<T: Serialize>(&mut self, event: &T) -> Result<(), Error> {
        let path = self.path.join("events.jsonl");
        let mut line =
            serde_json::to_vec(event).map_err(|error| Error::Write { path: path.clone(), source: error.into() })?;
        line.push(b'\n');
        self.journal
            .write_all(&line)
            .and_then(|()| self.journal.flush())
            .map_err(|source| Error::Write { path, source })
    }

    /// Writes one attempt's transcript and returns its path relative to the
    /// run directory.
    pub fn write_transcript(&self, attempt: &AttemptRecord, text: &str) -> Result<PathBuf, Error> {
        let relative = transcript_name(attempt);
        let path = self.path.join(&relative);
        fs::write(&path, text).map_err(|source| Error::Write { path, source })?;
        Ok(relative)
    }

    /// Writes `run.json` through a temporary file and a rename, so a reader
    /// never sees half a record. The JSON is streamed into the file, because
    /// at about 13 KB per message a buffer of it was a third of the peak
    /// memory of a 10,000-message run.
    pub fn write_record(&self, record: &RunRecord) -> Result<PathBuf, Error> {
        let path = self.path.join("run.json");
        let temporary = self.path.join(".run.json.tmp");
        let write = || -> std::io::Result<()> {
            let mut writer = BufWriter::new(File::create(&temporary)?);
            serde_json::to_writer_pretty(&mut writer, record)?;
            writer.flush()?;
            fs::rename(&temporary, &path)
        };
        write().map_err(|source| Error::Write { path: path.clone(), source })?;
        Ok(path)
    }
}

/// `transcripts/0007-m0003-try2-b-10.txt`: attempt number, message sequence,
/// try and path, so a directory listing sorts in the order of sending.
pub fn transcript_name(attempt: &AttemptRecord) -> PathBuf {
    let path: String = attempt
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    PathBuf::from("transcripts")
        .join(format!("{:04}-m{:04}-try{}-{path}.txt", attempt.number, attempt.sequence, attempt.try_number))
}
