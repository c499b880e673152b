//! The simulator's listener: one task per connection, a connection limit,
//! the record of the replies that decided each session, and graceful
//! shutdown.
//!
//! Shutdown follows the usual tokio layout. Dropping the only strong
//! broadcast sender closes the channel, which every task takes as the signal
//! to stop. Each connection task keeps a clone of an mpsc sender, so the
//! receiver returns `None` once the last task has ended.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mail_auth::MessageAuthenticator;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::auth::AuthSummary;
use super::maildir::MaildirRoot;
use super::policy::{Folder, SimConfig, Stage};
use super::session;
use super::tls;

/// The end of a transaction or connection, in the terms of an attempt's
/// outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimOutcome {
    /// The message was delivered (2xx after DATA).
    Accepted,
    /// A 4xx reply.
    Deferred,
    /// A 5xx reply.
    Rejected,
    /// The connection was closed in the middle of DATA without a reply.
    Dropped,
}

/// One decision of the simulator: a refusal at any stage, a delivered
/// message, or a dropped connection. Commands that only continue the session
/// (EHLO, an accepted RCPT) and protocol errors are logged, not recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimEvent {
    pub time: DateTime<Utc>,
    pub client_ip: IpAddr,
    /// Index of the rule that matched the client, `None` for `default`.
    pub rule: Option<usize>,
    pub stage: Stage,
    pub outcome: SimOutcome,
    /// The reply as sent, lines joined by `\n`; empty for a drop.
    pub reply: String,
    pub tls: bool,
    pub helo: Option<String>,
    /// Reverse path without angle brackets, once MAIL FROM was accepted
    /// (empty for the null sender).
    pub mail_from: Option<String>,
    /// Recipients of the transaction; for a refusal at RCPT, the refused one.
    pub rcpt_to: Vec<String>,
    pub queue_id: Option<String>,
    /// Folder of a delivered message.
    pub folder: Option<Folder>,
    /// Delivered files, one per recipient.
    pub delivered: Vec<PathBuf>,
    /// The receiver's verdicts on a delivered message.
    pub auth: Option<AuthSummary>,
}

/// State shared by every connection of one simulator.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub authenticator: Arc<MessageAuthenticator>,
    pub maildir: MaildirRoot,
    pub tls: TlsAcceptor,
    events: Mutex<Vec<SimEvent>>,
    /// Acceptance times per client IP, kept for `defer-after` rules only.
    accepted: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Shared {
    pub(crate) fn record(&self, event: SimEvent) {
        info!(
            client_ip = %event.client_ip,
            stage = event.stage.name(),
            outcome = ?event.outcome,
            queue_id = event.queue_id.as_deref().unwrap_or(""),
            reply = %event.reply,
            "transaction"
        );
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(event);
    }

    /// Counts the messages accepted from `client` within `window`.
    pub(crate) fn accepted_within(&self, client: IpAddr, window: Duration) -> usize {
        let mut accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(times) = accepted.get_mut(&client) else { return 0 };
        let now = Instant::now();
        while times.front().is_some_and(|time| now.duration_since(*time) >= window) {
            times.pop_front();
        }
        times.len()
    }

    pub(crate) fn count_accepted(&self, client: IpAddr) {
        let mut accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        accepted.entry(client).or_default().push_back(Instant::now());
    }
}

/// Receives the shutdown signal; `recv` returns at once after the first time.
pub(crate) struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub(crate) async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // A closed channel is the signal: the sender is dropped to shut down.
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// A running simulator. Dropping it also stops the simulator, without
/// waiting for the sessions to end.
pub struct SimHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    notify_shutdown: broadcast::Sender<()>,
    shutdown_complete: mpsc::Receiver<()>,
    accept_loop: JoinHandle<()>,
}

impl SimHandle {
    /// Returns the address the simulator listens on, with the port the
    /// system chose for `:0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns the directory that contains one Maildir per recipient.
    pub fn maildir_root(&self) -> &Path {
        self.shared.maildir.path()
    }

    /// Everything recorded so far, oldest first.
    pub fn events(&self) -> Vec<SimEvent> {
        self.shared.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops accepting, signals each session to close (a session waiting for
    /// the client gets `421 4.3.2`), and waits until all have ended.
    pub async fn shutdown(self) {
        let Self { notify_shutdown, mut shutdown_complete, accept_loop, local_addr, .. } = self;
        drop(notify_shutdown);
        if let Err(error) = accept_loop.await {
            warn!(%local_addr, %error, "simulator accept loop ended abnormally");
        }
        let _ = shutdown_complete.recv().await;
        info!(%local_addr, "simulator stopped");
    }
}

/// Starts the simulator: binds `config.listen`, makes the STARTTLS
/// certificate, creates `maildir_root` and spawns the accept loop.
///
/// The SPF, DKIM and DMARC checks send their DNS queries through
/// `authenticator`. Fails when the
/// address cannot be bound, when it is outside loopback without
/// `allow_non_loopback`, or when the Maildir root cannot be created.
pub async fn start(
    config: SimConfig,
    authenticator: Arc<MessageAuthenticator>,
    maildir_root: PathBuf,
) -> io::Result<SimHandle> {
    if !config.listen.ip().is_loopback() && !config.allow_non_loopback {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a loopback address and allow_non_loopback is not set", config.listen),
        ));
    }

    tokio::fs::create_dir_all(&maildir_root).await.map_err(|error| {
        io::Error::new(error.kind(), format!("failed to create the Maildir root {}: {error}", maildir_root.display()))
    })?;
    let tls = tls::acceptor(&config.hostname)?;
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;

    let limit = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        maildir: MaildirRoot::new(maildir_root, &config.hostname),
        config,
        authenticator,
        tls,
        events: Mutex::new(Vec::new()),
        accepted: Mutex::new(HashMap::new()),
    });
    let (notify_shutdown, _) = broadcast::channel(1);
    let (shutdown_complete_tx, shutdown_complete) = mpsc::channel(1);

    info!(
        %local_addr,
        hostname = %shared.config.hostname,
        maildir = %shared.maildir.path().display(),
        rules = shared.config.rules.len(),
        "simulator listening"
    );
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        Arc::clone(&shared),
        limit,
        notify_shutdown.subscribe(),
        notify_shutdown.downgrade(),
        shutdown_complete_tx,
    ));

    Ok(SimHandle { local_addr, shared, notify_shutdown, shutdown_complete, accept_loop })
}

/// Accepts connections until shutdown. `notify_shutdown` is a weak sender
/// because any strong sender keeps the channel open, and the channel closing
/// is the shutdown signal: the loop only subscribes new sessions with it.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut shutdown: broadcast::Receiver<()>,
    notify_shutdown: broadcast::WeakSender<()>,
    shutdown_complete: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => break,
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                // Errors such as EMFILE concern one connection; back off
                // briefly so that the loop does not spin.
                warn!(%error, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(notify) = notify_shutdown.upgrade() else { break };

        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream, peer, shared.config.hostname.clone()));
            continue;
        };
        let shared = Arc::clone(&shared);
        let shutdown = Shutdown { is_shutdown: false, notify: notify.subscribe() };
        let complete = shutdown_complete.clone();
        tokio::spawn(async move {
            session::serve(shared, stream, peer, shutdown).await;
            drop(permit);
            drop(complete);
        });
    }
    debug!("accept loop ended");
}

/// Replies 421 to a connection over `max_connections` and closes it.
async fn refuse_busy(mut stream: TcpStream, peer: SocketAddr, hostname: String) {
    debug!(client_ip = %peer.ip(), "too many connections; answering 421");
    let reply = format!("421 4.7.0 {hostname} Too many connections, try again later\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
