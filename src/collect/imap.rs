//! Reading a seed's mailbox over IMAP4rev1 (RFC 3501) for the copies of given
//! tracking tokens.
//!
//! One connection per mailbox is opened on the first poll and kept for the
//! next ones. Each poll lists the folders, picks INBOX and the spam folders
//! (the `\Junk` special-use attribute of RFC 6154, or a configured name), and
//! sends UID SEARCH on their headers for the tokens, so only matching
//! messages cross the wire. Folders are opened with EXAMINE and messages
//! fetched with `BODY.PEEK[]`, so the seed's read state stays as it was.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{NameAttribute, Response, Status};
use async_imap::{Client, Session};
use chrono::Utc;
use futures::TryStreamExt;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{CollectError, FoundCopy, Placement};
use crate::message::{TOKEN_HEADER, TrackingToken};
use crate::scenario::{ImapMailbox, ImapTls, SecretSource};
use crate::smtp::TlsPolicy;
use crate::smtp::tls::{client_config, server_name};

/// Time allowed for TCP connect, TLS, the greeting and LOGIN together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed for one poll: LIST, and EXAMINE, SEARCH and FETCH per folder.
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Time allowed for LOGOUT; the connection is dropped either way.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tokens per UID SEARCH. Each token adds two HEADER keys joined by OR, so
/// this bounds the command line at about 4 KB.
const TOKENS_PER_SEARCH: usize = 25;

/// The byte stream under the IMAP session: plain TCP, or TLS over TCP after
/// implicit TLS or STARTTLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(_) => formatter.write_str("Transport::Plain"),
            Transport::Tls(_) => formatter.write_str("Transport::Tls"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Transport::Tls(stream) => Pin::new(stream).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Transport::Tls(stream) => Pin::new(stream).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(context),
            Transport::Tls(stream) => Pin::new(stream).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Transport::Tls(stream) => Pin::new(stream).poll_shutdown(context),
        }
    }
}

/// An IMAP mailbox read as one seed mailbox, with its connection kept
/// between polls.
pub struct ImapReader {
    target: Target,
    session: Option<Session<Transport>>,
    connections: usize,
}

/// The mailbox settings that a connection and a poll use.
struct Target {
    /// The `[mailbox.NAME]` name, for messages.
    name: String,
    config: ImapMailbox,
    /// `host:port`, for messages and locations.
    server: String,
    /// Folder names (compared without case, as the full name or its last
    /// level) that count as spam besides folders marked `\Junk`.
    spam_folders: Vec<String>,
}

/// A folder to search, and whether it counts as spam placement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Folder {
    name: String,
    spam: bool,
}

impl ImapReader {
    /// Prepares a reader for mailbox `name`. Nothing is connected and no
    /// password is read until the first [`ImapReader::find`].
    pub fn new(name: &str, config: ImapMailbox, spam_folders: Vec<String>) -> ImapReader {
        let server = format!("{}:{}", config.host, config.port);
        ImapReader {
            target: Target { name: name.to_string(), config, server, spam_folders },
            session: None,
            connections: 0,
        }
    }

    /// Returns the number of connections opened so far, reconnections included.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Searches INBOX and the spam folders for messages carrying one of
    /// `tokens` and fetches them. A kept connection that fails is replaced
    /// once, and a failure on a new connection is returned.
    pub async fn find(&mut self, tokens: &BTreeSet<String>) -> Result<Vec<FoundCopy>, CollectError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }

        let reused = self.session.is_some();
        let mut session = match self.session.take() {
            Some(session) => session,
            None => self.open().await?,
        };
        let result = poll(&mut session, &self.target, tokens).await;
        match result {
            Ok(copies) => {
                self.session = Some(session);
                Ok(copies)
            }
            // The server may have closed an idle connection between polls or
            // restarted, so a kept connection gets one replacement.
            Err(error) if reused => {
                tracing::warn!(mailbox = %self.target.name, server = %self.target.server, %error, "IMAP connection failed; reconnecting once");
                drop(session);
                let mut session = self.open().await?;
                let copies = poll(&mut session, &self.target, tokens).await?;
                self.session = Some(session);
                Ok(copies)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends LOGOUT on the kept connection, if any, and closes it. A failure
    /// is only logged, because the copies are already read.
    pub async fn logout(&mut self) {
        let Some(mut session) = self.session.take() else { return };
        match tokio::time::timeout(LOGOUT_TIMEOUT, session.logout()).await {
            Ok(Ok(())) => tracing::debug!(mailbox = %self.target.name, server = %self.target.server, "IMAP logout"),
            Ok(Err(error)) => {
                tracing::warn!(mailbox = %self.target.name, server = %self.target.server, %error, "IMAP LOGOUT failed")
            }
            Err(_) => {
                tracing::warn!(mailbox = %self.target.name, server = %self.target.server, "IMAP LOGOUT timed out")
            }
        }
    }

    async fn open(&mut self) -> Result<Session<Transport>, CollectError> {
        self.connections += 1;
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.target)).await {
            Ok(result) => result,
            Err(_) => Err(self.target.protocol_error(
                "connect",
                format!(
                    "no greeting or login reply within {} s; if the port expects implicit TLS, write imaps://",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

impl Target {
    fn protocol_error(&self, action: &str, detail: impl Into<String>) -> CollectError {
        CollectError::Imap {
            mailbox: self.name.clone(),
            server: self.server.clone(),
            action: action.to_string(),
            detail: detail.into(),
        }
    }

    fn tls_error(&self, detail: impl Into<String>) -> CollectError {
        CollectError::ImapTls { mailbox: self.name.clone(), server: self.server.clone(), detail: detail.into() }
    }

    /// Names the password's source for the login failure message.
    fn password_source(&self) -> String {
        match &self.config.password {
            SecretSource::Env(variable) => format!("password_env ({variable})"),
            SecretSource::File(path) => format!("password_file ({})", path.display()),
        }
    }

    fn placement(&self, folder: &Folder) -> Placement {
        if folder.spam { Placement::Spam } else { Placement::Inbox }
    }

    /// Formats a copy's address as an IMAP URL (RFC 5092): server, folder and UID.
    fn location(&self, folder: &str, uid: u32) -> String {
        format!("imap://{}/{};UID={uid}", self.server, encode_folder(folder))
    }
}

/// Opens a connection, reads the greeting, upgrades to TLS as configured and
/// logs in.
async fn connect(target: &Target) -> Result<Session<Transport>, CollectError> {
    let config = &target.config;
    let password = read_password(target)?;

    let tcp =
        TcpStream::connect((config.host.as_str(), config.port)).await.map_err(|error| CollectError::ImapConnect {
            mailbox: target.name.clone(),
            server: target.server.clone(),
            detail: error.to_string(),
        })?;
    tracing::debug!(mailbox = %target.name, server = %target.server, tls = ?config.tls, "IMAP connected");

    // async-imap does not read the greeting itself, so each branch reads it
    // before the first command. STARTTLS (RFC 3501 section 6.2.1) is sent on
    // the plain stream, and the greeting is not repeated after the upgrade.
    let client = match config.tls {
        ImapTls::Implicit => {
            let tls = handshake(target, tcp).await?;
            let mut client = Client::new(Transport::Tls(Box::new(tls)));
            read_greeting(target, &mut client).await?;
            client
        }
        ImapTls::Starttls => {
            let mut client = Client::new(Transport::Plain(tcp));
            read_greeting(target, &mut client).await?;
            client.run_command_and_check_ok("STARTTLS", None).await.map_err(|error| {
                target.tls_error(format!(
                    "the server rejected STARTTLS ({error}); write imaps:// if the port expects implicit TLS"
                ))
            })?;
            let Transport::Plain(tcp) = client.into_inner() else {
                unreachable!("the stream is plain before STARTTLS")
            };
            let tls = handshake(target, tcp).await?;
            Client::new(Transport::Tls(Box::new(tls)))
        }
        ImapTls::None => {
            let mut client = Client::new(Transport::Plain(tcp));
            read_greeting(target, &mut client).await?;
            client
        }
    };

    // LOGIN arguments go only to the socket. async-imap traces every command
    // it encodes through the `log` crate, so Cargo.toml caps `log` at debug
    // level at compile time and that trace line does not exist in this build.
    let session = client.login(&config.username, &password).await.map_err(|(error, _client)| {
        let detail = match error {
            async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => text,
            // The validation error names the offending character, which may
            // come from the password, so only the kind of problem is kept.
            async_imap::error::Error::Validate(_) => {
                "the username or password contains a line break, which LOGIN cannot send".to_string()
            }
            other => other.to_string(),
        };
        CollectError::ImapLogin {
            mailbox: target.name.clone(),
            server: target.server.clone(),
            detail,
            password_source: target.password_source(),
        }
    })?;
    tracing::debug!(mailbox = %target.name, server = %target.server, "IMAP login succeeded");
    Ok(session)
}

/// Reads the server greeting (RFC 3501 section 7.1): `* OK` is expected.
async fn read_greeting(target: &Target, client: &mut Client<Transport>) -> Result<(), CollectError> {
    let response = client
        .read_response()
        .await
        .map_err(|error| target.protocol_error("greeting", error.to_string()))?
        .ok_or_else(|| target.protocol_error("greeting", "the server closed the connection before its greeting"))?;
    match response.parsed() {
        Response::Data { status: Status::Ok, .. } => Ok(()),
        Response::Data { status, outcome } => Err(target.protocol_error(
            "greeting",
            format!("the server greeted with {status:?}: {}", outcome.information.as_deref().unwrap_or("")),
        )),
        other => Err(target.protocol_error("greeting", format!("unexpected greeting {other:?}"))),
    }
}

/// Runs the TLS handshake with the mailbox's trust settings.
async fn handshake(target: &Target, tcp: TcpStream) -> Result<TlsStream<TcpStream>, CollectError> {
    let config = &target.config;
    let extra_roots = match &config.ca_file {
        Some(path) => read_ca_file(path).map_err(|detail| target.tls_error(detail))?,
        None => Vec::new(),
    };
    if config.accept_invalid_certs {
        tracing::warn!(
            mailbox = %target.name,
            server = %target.server,
            "accept_invalid_certs is set: the IMAP server's certificate is not verified, so the password may be sent to an impostor"
        );
    }
    let policy =
        TlsPolicy { verify: !config.accept_invalid_certs, extra_roots, server_name: Some(config.host.clone()) };
    let (client_config, verify_result) = client_config(&policy).map_err(|detail| target.tls_error(detail))?;
    let name = server_name(&config.host).map_err(|detail| target.tls_error(detail))?;

    let tls = TlsConnector::from(Arc::clone(&client_config)).connect(name, tcp).await.map_err(|error| {
        // The verifier stores why the certificate failed, which is clearer
        // than the alert rustls reports.
        let verification = verify_result.lock().ok().and_then(|slot| slot.clone());
        match verification {
            Some(Err(reason)) => target.tls_error(format!("certificate not trusted: {reason}")),
            _ => target.tls_error(error.to_string()),
        }
    })?;

    let verification = verify_result.lock().ok().and_then(|slot| slot.clone());
    if let Some(Err(reason)) = verification {
        tracing::warn!(mailbox = %target.name, server = %target.server, %reason, "IMAP certificate not trusted; continuing because accept_invalid_certs is set");
    }
    Ok(tls)
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read ca_file {}: {error}", path.display()))?
        .collect();
    match certificates {
        Ok(list) if !list.is_empty() => Ok(list),
        Ok(_) => Err(format!("ca_file {} holds no PEM CERTIFICATE block", path.display())),
        Err(error) => Err(format!("ca_file {} is not a valid PEM certificate file: {error}", path.display())),
    }
}

/// Reads the password from its source. A password file loses one trailing
/// newline, the one editors and `echo` add.
fn read_password(target: &Target) -> Result<String, CollectError> {
    let problem = |problem: String| CollectError::ImapPassword { mailbox: target.name.clone(), problem };
    let password = match &target.config.password {
        SecretSource::Env(variable) => match std::env::var(variable) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(problem(format!("environment variable {variable} (password_env) is not set")));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(problem(format!("environment variable {variable} (password_env) is not valid UTF-8")));
            }
        },
        SecretSource::File(path) => {
            let mut text = std::fs::read_to_string(path)
                .map_err(|error| problem(format!("cannot read password_file {}: {error}", path.display())))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
    };
    if password.is_empty() {
        return Err(problem(format!("the password from {} is empty", target.password_source())));
    }
    Ok(password)
}

/// One poll on an open session: LIST, then EXAMINE, UID SEARCH and UID FETCH
/// per folder to search.
async fn poll(
    session: &mut Session<Transport>,
    target: &Target,
    tokens: &BTreeSet<String>,
) -> Result<Vec<FoundCopy>, CollectError> {
    let result = tokio::time::timeout(POLL_TIMEOUT, search_folders(session, target, tokens)).await;

    // EXAMINE reports EXISTS and RECENT as unsolicited responses, which this
    // reader does not use; the channel is emptied so it never fills.
    while session.unsolicited_responses.try_recv().is_ok() {}

    match result {
        Ok(copies) => copies,
        Err(_) => Err(target.protocol_error("poll", format!("no reply within {} s", POLL_TIMEOUT.as_secs()))),
    }
}

async fn search_folders(
    session: &mut Session<Transport>,
    target: &Target,
    tokens: &BTreeSet<String>,
) -> Result<Vec<FoundCopy>, CollectError> {
    let folders = list_folders(session, target).await?;
    tracing::debug!(mailbox = %target.name, folders = ?folders, "IMAP folders searched");

    let tokens: Vec<&String> = tokens.iter().collect();
    let mut found = Vec::new();
    for folder in &folders {
        session
            .examine(&folder.name)
            .await
            .map_err(|error| target.protocol_error(&format!("EXAMINE {}", folder.name), error.to_string()))?;

        let mut uids: BTreeSet<u32> = BTreeSet::new();
        for chunk in tokens.chunks(TOKENS_PER_SEARCH) {
            let query = search_query(chunk);
            let matches = session
                .uid_search(&query)
                .await
                .map_err(|error| target.protocol_error(&format!("UID SEARCH in {}", folder.name), error.to_string()))?;
            uids.extend(matches);
        }
        if uids.is_empty() {
            continue;
        }

        let uid_set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let fetch_error = |error: async_imap::error::Error| {
            target.protocol_error(&format!("UID FETCH in {}", folder.name), error.to_string())
        };
        let fetches: Vec<_> = session
            .uid_fetch(&uid_set, "(UID BODY.PEEK[])")
            .await
            .map_err(fetch_error)?
            .try_collect()
            .await
            .map_err(fetch_error)?;
        for fetch in fetches {
            let (Some(uid), Some(bytes)) = (fetch.uid, fetch.body()) else { continue };
            let Some(token) = token_of(bytes).filter(|token| tokens.contains(&token)) else {
                // HEADER search matches substrings, so a message that quotes a
                // token elsewhere in a header is not one of ours.
                tracing::debug!(mailbox = %target.name, folder = %folder.name, uid, "IMAP search match carries no wanted token");
                continue;
            };
            found.push(FoundCopy {
                token,
                folder: folder.name.clone(),
                placement: target.placement(folder),
                location: target.location(&folder.name, uid),
                bytes: bytes.to_vec(),
                found_at: Utc::now(),
            });
        }
    }
    Ok(found)
}

/// Lists every folder and returns INBOX and the spam folders, INBOX first.
/// A folder counts as spam by the `\Junk` attribute or by a configured name.
async fn list_folders(session: &mut Session<Transport>, target: &Target) -> Result<Vec<Folder>, CollectError> {
    let names: Vec<_> = session
        .list(Some(""), Some("*"))
        .await
        .map_err(|error| target.protocol_error("LIST", error.to_string()))?
        .try_collect()
        .await
        .map_err(|error| target.protocol_error("LIST", error.to_string()))?;

    let mut folders = vec![Folder { name: "INBOX".to_string(), spam: false }];
    for name in &names {
        let attributes = name.attributes();
        let selectable = !attributes.iter().any(|attribute| match attribute {
            NameAttribute::NoSelect => true,
            // RFC 5258 marks a name that is only a place in the hierarchy.
            NameAttribute::Extension(text) => text.eq_ignore_ascii_case("\\NonExistent"),
            _ => false,
        });
        if !selectable {
            continue;
        }
        if name.name().eq_ignore_ascii_case("INBOX") {
            continue;
        }
        let junk = attributes.iter().any(|attribute| matches!(attribute, NameAttribute::Junk));
        let leaf = match name.delimiter() {
            Some(delimiter) if !delimiter.is_empty() => name.name().rsplit(delimiter).next().unwrap_or(name.name()),
            _ => name.name(),
        };
        let configured = target
            .spam_folders
            .iter()
            .any(|spam| spam.eq_ignore_ascii_case(name.name()) || spam.eq_ignore_ascii_case(leaf));
        if junk || configured {
            folders.push(Folder { name: name.name().to_string(), spam: true });
        }
    }
    Ok(folders)
}

/// Builds a UID SEARCH query that matches any of `tokens` in the tracking
/// header or in the Message-ID, for copies whose tracking header a gateway
/// removed. The keys are joined by prefix ORs: `OR OR k1 k2 k3`.
// NOTE: only Dovecot's substring HEADER search is tested. A server that
// searches an index of whole words may miss the `TOKEN.mailcanary@` key.
fn search_query(tokens: &[&String]) -> String {
    let mut keys = Vec::with_capacity(tokens.len() * 2);
    for token in tokens {
        keys.push(format!("HEADER {TOKEN_HEADER} \"{token}\""));
        keys.push(format!("HEADER Message-ID \"{token}.mailcanary@\""));
    }
    format!("{}{}", "OR ".repeat(keys.len() - 1), keys.join(" "))
}

/// Reads the tracking token of a fetched message from its tracking header
/// or, when a gateway removed that, its Message-ID.
fn token_of(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse_headers(message)?;
    let from_header = parsed.header_raw(TOKEN_HEADER).and_then(TrackingToken::parse);
    let token = from_header.or_else(|| parsed.message_id().and_then(TrackingToken::from_message_id))?;
    Some(token.as_str().to_string())
}

/// Percent-encodes a folder name for an IMAP URL, keeping the characters
/// RFC 3986 leaves unreserved and the hierarchy delimiters `/` and `.`.
fn encode_folder(folder: &str) -> String {
    let mut encoded = String::with_capacity(folder.len());
    for byte in folder.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(password: SecretSource) -> Target {
        let config = ImapMailbox {
            host: "imap.example.com".to_string(),
            port: 993,
            tls: ImapTls::Implicit,
            username: "seed@example.com".to_string(),
            password,
            ca_file: None,
            accept_invalid_certs: false,
            spam_folders: Vec::new(),
            authserv_id: None,
        };
        ImapReader::new("seeds", config, vec!["Spam".to_string()]).target
    }

    #[test]
    fn imap_commands_are_never_traced() {
        // async-imap logs each encoded command, LOGIN arguments included, at
        // trace level; the compile-time cap removes those calls.
        assert!(log::STATIC_MAX_LEVEL <= log::LevelFilter::Debug);
    }

    #[test]
    fn search_query_joins_keys_with_prefix_or() {
        let first = "mcaaaaaaaaaaaaaaaaaaaaaaaa".to_string();
        let second = "mcbbbbbbbbbbbbbbbbbbbbbbbb".to_string();
        let query = search_query(&[&first, &second]);
        assert_eq!(
            query,
            "OR OR OR HEADER X-Mailcanary-Token \"mcaaaaaaaaaaaaaaaaaaaaaaaa\" \
             HEADER Message-ID \"mcaaaaaaaaaaaaaaaaaaaaaaaa.mailcanary@\" \
             HEADER X-Mailcanary-Token \"mcbbbbbbbbbbbbbbbbbbbbbbbb\" \
             HEADER Message-ID \"mcbbbbbbbbbbbbbbbbbbbbbbbb.mailcanary@\""
        );
    }

    #[test]
    fn token_read_from_header_or_message_id() {
        let token = TrackingToken::generate();
        let with_header = format!("{TOKEN_HEADER}: {token}\r\nSubject: x\r\n\r\nbody\r\n");
        assert_eq!(token_of(with_header.as_bytes()).as_deref(), Some(token.as_str()));

        let with_message_id = format!("Message-ID: <{}>\r\n\r\nbody\r\n", token.message_id("example.com"));
        assert_eq!(token_of(with_message_id.as_bytes()).as_deref(), Some(token.as_str()));

        assert_eq!(token_of(b"Subject: unrelated\r\n\r\nbody\r\n"), None);
    }

    #[test]
    fn location_is_an_imap_url() {
        let target = target(SecretSource::Env("UNUSED".to_string()));
        assert_eq!(target.location("INBOX", 7), "imap://imap.example.com:993/INBOX;UID=7");
        assert_eq!(target.location("Bulk Mail", 3), "imap://imap.example.com:993/Bulk%20Mail;UID=3");
    }

    #[test]
    fn password_file_loses_one_trailing_newline() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("password");
        std::fs::write(&path, "secret\n\n").unwrap();
        let password = read_password(&target(SecretSource::File(path))).unwrap();
        assert_eq!(password, "secret\n");
    }

    #[test]
    fn missing_password_variable_names_it() {
        let variable = "MAILCANARY_TEST_UNSET_IMAP_PASSWORD";
        let error = read_password(&target(SecretSource::Env(variable.to_string()))).unwrap_err().to_string();
        assert!(error.contains(variable), "{error}");
        assert!(error.contains("seeds"), "{error}");
    }

    #[test]
    fn unreadable_password_file_names_it() {
        let path = std::path::PathBuf::from("/nonexistent/mailcanary/password");
        let error = read_password(&target(SecretSource::File(path))).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/mailcanary/password"), "{error}");
        assert!(error.contains("seeds"), "{error}");
    }
}
