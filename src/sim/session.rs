//! One SMTP session of the simulator (RFC 5321, STARTTLS per RFC 3207,
//! SIZE per RFC 1870, ENHANCEDSTATUSCODES per RFC 2034): the command loop,
//! the policy's refusals at each stage, DATA with dot-unstuffing, and the
//! delivery of accepted messages.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chrono::Utc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, trace, warn};

use super::auth::{self, Envelope};
use super::policy::{Action, Folder, Stage};
use super::reply::{Reply, ReplyContext};
use super::server::{Shared, Shutdown, SimEvent, SimOutcome};

/// RFC 5321 section 4.5.3.1.6 limits a text line to 1000 octets including
/// CRLF. The simulator replies 500 5.5.2 only above twice that, so that a
/// slightly long line from a real MTA does not turn a rehearsal into a
/// protocol failure.
const MAX_LINE_OCTETS: usize = 2048;

/// RFC 5321 section 4.5.3.1.8 requires servers to accept at least 100
/// recipients per transaction; the simulator replies 452 to more.
const MAX_RECIPIENTS: usize = 100;

/// A plain TCP stream before STARTTLS, a TLS stream after it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Connection = BufReader<Box<dyn Stream>>;

/// The next step of the command loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// One line read from the client.
enum Input {
    /// A line with its line ending.
    Line(Vec<u8>),
    /// A line over [`MAX_LINE_OCTETS`], already consumed up to its end.
    TooLong,
    /// The client closed the connection, or the session timed out or shut
    /// down (the 421 reply has been sent).
    Closed,
}

/// The message content after DATA.
enum Data {
    /// The final dot arrived. `oversize` and `line_too_long` mean that the
    /// content was read to its end but not kept in full.
    Complete {
        message: Vec<u8>,
        oversize: bool,
        line_too_long: bool,
    },
    /// A `drop` rule read enough.
    Cut {
        received: u64,
    },
    Closed,
}

struct Transaction {
    queue_id: String,
    /// Reverse path without angle brackets; empty for the null sender.
    mail_from: String,
    rcpt_to: Vec<String>,
}

struct Session {
    shared: Arc<Shared>,
    client_ip: IpAddr,
    rule: Option<usize>,
    action: Action,
    /// Fills `{queue_id}` outside a transaction.
    connection_id: String,
    greeting_refused: bool,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    transaction: Option<Transaction>,
    errors: u32,
}

/// Serves one connection until QUIT, a closing reply, a timeout, an I/O
/// error or shutdown.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, mut shutdown: Shutdown) {
    let client_ip = peer.ip().to_canonical();
    let (rule, action) = shared.config.action_for(client_ip);
    let action = action.clone();
    debug!(%client_ip, rule = ?rule, ?action, "connection opened");

    let mut session = Session {
        shared,
        client_ip,
        rule,
        action,
        connection_id: new_queue_id(),
        greeting_refused: false,
        helo: None,
        esmtp: false,
        tls: false,
        transaction: None,
        errors: 0,
    };
    let mut connection: Connection = BufReader::new(Box::new(stream));

    let mut flow = session.greet(&mut connection).await;
    loop {
        match flow {
            Ok(Flow::Continue) => flow = session.converse(&mut connection, &mut shutdown).await,
            Ok(Flow::Close) => break,
            Ok(Flow::StartTls) => {
                // `into_inner` discards anything the client sent after
                // STARTTLS before the handshake, as RFC 3207 section 4.2
                // requires, so that plaintext cannot be injected into the
                // TLS session.
                let plain = connection.into_inner();
                let handshake =
                    tokio::time::timeout(session.shared.config.idle_timeout, session.shared.tls.accept(plain));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        debug!(%client_ip, "TLS established");
                        connection = BufReader::new(Box::new(tls));
                        session.reset_after_tls();
                        flow = Ok(Flow::Continue);
                    }
                    Ok(Err(error)) => {
                        debug!(%client_ip, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%client_ip, "TLS handshake timed out");
                        return;
                    }
                }
            }
            Err(error) => {
                debug!(%client_ip, %error, "connection ended with an I/O error");
                return;
            }
        }
    }

    let _ = connection.get_mut().shutdown().await;
    debug!(%client_ip, "connection closed");
}

impl Session {
    async fn greet(&mut self, connection: &mut Connection) -> io::Result<Flow> {
        if let Some(reply) = self.refusal(Stage::Greeting) {
            // A client refused in the greeting may still send QUIT.
            self.greeting_refused = true;
            return self.refuse(connection, Stage::Greeting, reply, None).await;
        }
        let banner = Reply::new(220, format!("{} ESMTP mailcanary sim", self.shared.config.hostname));
        self.send(connection, &banner).await?;
        Ok(Flow::Continue)
    }

    /// Reads commands and replies to each until the session closes or
    /// starts TLS.
    async fn converse(&mut self, connection: &mut Connection, shutdown: &mut Shutdown) -> io::Result<Flow> {
        loop {
            let line = match self.next_line(connection, shutdown).await? {
                Input::Line(line) => line,
                Input::TooLong => {
                    let flow = self.protocol_error(connection, Reply::new(500, "5.5.2 Error: line too long")).await?;
                    if flow != Flow::Continue {
                        return Ok(flow);
                    }
                    continue;
                }
                Input::Closed => return Ok(Flow::Close),
            };

            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            trace!(client_ip = %self.client_ip, command = %text, "received");
            let flow = self.command(connection, shutdown, text).await?;
            if flow != Flow::Continue {
                return Ok(flow);
            }
        }
    }

    async fn command(&mut self, connection: &mut Connection, shutdown: &mut Shutdown, text: &str) -> io::Result<Flow> {
        let (verb, arguments) = text.split_once(' ').unwrap_or((text, ""));
        let verb = verb.to_ascii_uppercase();
        let arguments = arguments.trim();

        if self.greeting_refused && verb != "QUIT" {
            let reply = Reply::new(503, "5.5.1 Error: this session was rejected in the greeting; send QUIT");
            return self.protocol_error(connection, reply).await;
        }

        match verb.as_str() {
            "EHLO" => self.hello(connection, arguments, true).await,
            "HELO" => self.hello(connection, arguments, false).await,
            "MAIL" => self.mail(connection, arguments).await,
            "RCPT" => self.rcpt(connection, arguments).await,
            "DATA" => self.data(connection, shutdown, arguments).await,
            "RSET" => {
                self.transaction = None;
                self.respond(connection, Reply::new(250, "2.0.0 Ok")).await
            }
            "NOOP" => self.respond(connection, Reply::new(250, "2.0.0 Ok")).await,
            "QUIT" => {
                self.send(connection, &Reply::new(221, "2.0.0 Bye")).await?;
                Ok(Flow::Close)
            }
            "VRFY" if arguments.is_empty() => {
                self.protocol_error(connection, Reply::new(501, "5.5.4 Syntax: VRFY address")).await
            }
            "VRFY" => {
                let reply = Reply::new(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
                self.respond(connection, reply).await
            }
            "STARTTLS" => self.starttls(connection, arguments).await,
            "HELP" => {
                let reply = Reply::new(214, "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS");
                self.respond(connection, reply).await
            }
            "EXPN" | "TURN" | "ETRN" | "ATRN" | "AUTH" | "BDAT" | "SEND" | "SOML" | "SAML" => {
                self.protocol_error(connection, Reply::new(502, "5.5.1 Error: command not implemented")).await
            }
            _ => self.protocol_error(connection, Reply::new(500, "5.5.2 Error: command not recognized")).await,
        }
    }

    /// EHLO (`extended`) or HELO.
    async fn hello(&mut self, connection: &mut Connection, arguments: &str, extended: bool) -> io::Result<Flow> {
        let Some(name) = arguments.split_whitespace().next() else {
            let syntax = if extended { "5.5.4 Syntax: EHLO hostname" } else { "5.5.4 Syntax: HELO hostname" };
            return self.protocol_error(connection, Reply::new(501, syntax)).await;
        };

        if let Some(reply) = self.refusal(Stage::Ehlo) {
            self.helo = Some(name.to_string());
            let flow = self.refuse(connection, Stage::Ehlo, reply, None).await;
            self.helo = None;
            return flow;
        }

        // A new EHLO resets the session state (RFC 5321 section 4.1.4).
        self.helo = Some(name.to_string());
        self.esmtp = extended;
        self.transaction = None;

        let hostname = &self.shared.config.hostname;
        if !extended {
            return self.respond(connection, Reply::new(250, hostname.clone())).await;
        }
        let mut lines = vec![
            format!("{hostname} Hello {name} [{}]", self.client_ip),
            format!("SIZE {}", self.shared.config.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if !self.tls {
            lines.push("STARTTLS".to_string());
        }
        self.respond(connection, Reply::from_lines(250, lines)).await
    }

    async fn mail(&mut self, connection: &mut Connection, arguments: &str) -> io::Result<Flow> {
        if self.helo.is_none() {
            return self.protocol_error(connection, Reply::new(503, "5.5.1 Error: send HELO/EHLO first")).await;
        }
        if self.transaction.is_some() {
            return self.protocol_error(connection, Reply::new(503, "5.5.1 Error: nested MAIL command")).await;
        }
        let Some(rest) = strip_prefix_ignore_case(arguments, "FROM:") else {
            return self.protocol_error(connection, Reply::new(501, "5.5.4 Syntax: MAIL FROM:<address>")).await;
        };
        let Some((mail_from, parameters)) = parse_path(rest).filter(|(path, _)| path.is_empty() || is_address(path))
        else {
            return self.protocol_error(connection, Reply::new(501, "5.1.7 Bad sender address syntax")).await;
        };

        let mut declared_size = None;
        for parameter in parameters.split_whitespace() {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            let invalid = match name.to_ascii_uppercase().as_str() {
                _ if !self.esmtp => Some(Reply::new(555, "5.5.4 Error: MAIL parameters need EHLO")),
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) => {
                        declared_size = Some(size);
                        None
                    }
                    Err(_) => Some(Reply::new(501, "5.5.4 Bad SIZE parameter")),
                },
                "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => None,
                "BODY" => Some(Reply::new(501, "5.5.4 Unsupported BODY value; use 7BIT or 8BITMIME")),
                _ => Some(Reply::new(555, format!("5.5.4 Unsupported option: {name}"))),
            };
            if let Some(reply) = invalid {
                return self.protocol_error(connection, reply).await;
            }
        }

        self.transaction = Some(Transaction { queue_id: new_queue_id(), mail_from, rcpt_to: Vec::new() });

        // RFC 1870: a declared size over the limit is refused before any data.
        let max = self.shared.config.max_message_size;
        if declared_size.is_some_and(|size| size > max) {
            let reply = Reply::new(552, "5.3.4 Message size exceeds fixed maximum message size");
            let flow = self.refuse(connection, Stage::Mail, reply, None).await;
            self.transaction = None;
            return flow;
        }
        if let Some(reply) = self.refusal(Stage::Mail) {
            let flow = self.refuse(connection, Stage::Mail, reply, None).await;
            self.transaction = None;
            return flow;
        }
        self.respond(connection, Reply::new(250, "2.1.0 Ok")).await
    }

    async fn rcpt(&mut self, connection: &mut Connection, arguments: &str) -> io::Result<Flow> {
        let Some(transaction) = &self.transaction else {
            return self.protocol_error(connection, Reply::new(503, "5.5.1 Error: need MAIL command")).await;
        };
        let recipients = transaction.rcpt_to.len();
        let Some(rest) = strip_prefix_ignore_case(arguments, "TO:") else {
            return self.protocol_error(connection, Reply::new(501, "5.5.4 Syntax: RCPT TO:<address>")).await;
        };
        let Some((address, parameters)) = parse_path(rest) else {
            return self.protocol_error(connection, Reply::new(501, "5.1.3 Bad recipient address syntax")).await;
        };
        if !parameters.trim().is_empty() {
            let reply = Reply::new(555, "5.5.4 Error: RCPT parameters are not supported");
            return self.protocol_error(connection, reply).await;
        }
        // The address names a directory under the Maildir root, so it must
        // be a plain address without path separators.
        let Some(address) = normalize_recipient(&address) else {
            return self.protocol_error(connection, Reply::new(501, "5.1.3 Bad recipient address syntax")).await;
        };

        let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
        if !self.shared.config.accepts_domain(domain) {
            let reply = Reply::new(550, format!("5.7.1 <{address}>: relaying denied"));
            return self.refuse(connection, Stage::Rcpt, reply, Some(address)).await;
        }
        if recipients >= MAX_RECIPIENTS {
            return self.respond(connection, Reply::new(452, "4.5.3 Error: too many recipients")).await;
        }
        if let Some(reply) = self.refusal(Stage::Rcpt) {
            return self.refuse(connection, Stage::Rcpt, reply, Some(address)).await;
        }

        if let Some(transaction) = &mut self.transaction {
            transaction.rcpt_to.push(address);
        }
        self.respond(connection, Reply::new(250, "2.1.5 Ok")).await
    }

    async fn data(
        &mut self,
        connection: &mut Connection,
        shutdown: &mut Shutdown,
        arguments: &str,
    ) -> io::Result<Flow> {
        if !arguments.is_empty() {
            return self.protocol_error(connection, Reply::new(501, "5.5.4 Syntax: DATA")).await;
        }
        match &self.transaction {
            None => return self.protocol_error(connection, Reply::new(503, "5.5.1 Error: need RCPT command")).await,
            Some(transaction) if transaction.rcpt_to.is_empty() => {
                return self.respond(connection, Reply::new(554, "5.5.1 Error: no valid recipients")).await;
            }
            Some(_) => {}
        }
        if let Some(reply) = self.refusal(Stage::Data) {
            let flow = self.refuse(connection, Stage::Data, reply, None).await;
            self.transaction = None;
            return flow;
        }

        self.send(connection, &Reply::new(354, "End data with <CR><LF>.<CR><LF>")).await?;
        let drop_after = match self.action {
            Action::Drop { after_bytes } => Some(after_bytes),
            _ => None,
        };
        let data = self.read_data(connection, shutdown, drop_after).await?;

        let flow = match data {
            Data::Closed => Ok(Flow::Close),
            Data::Cut { received } => Ok(self.drop_connection(received)),
            Data::Complete { message, .. } if drop_after.is_some() => Ok(self.drop_connection(message.len() as u64)),
            Data::Complete { message, oversize, line_too_long } => {
                self.end_of_data(connection, message, oversize, line_too_long).await
            }
        };
        self.transaction = None;
        flow
    }

    /// Records a `drop` and closes without a reply.
    fn drop_connection(&mut self, received: u64) -> Flow {
        debug!(client_ip = %self.client_ip, received, "dropping the connection in DATA");
        let event = self.event(Stage::Data, SimOutcome::Dropped, String::new(), None);
        self.shared.record(event);
        Flow::Close
    }

    /// Replies to the final dot: a refusal, or authentication and delivery.
    async fn end_of_data(
        &mut self,
        connection: &mut Connection,
        message: Vec<u8>,
        oversize: bool,
        line_too_long: bool,
    ) -> io::Result<Flow> {
        if oversize {
            let reply = Reply::new(552, "5.3.4 Error: message file too big");
            return self.refuse(connection, Stage::EndOfData, reply, None).await;
        }
        if line_too_long {
            let reply = Reply::new(500, format!("5.5.2 Error: message line longer than {MAX_LINE_OCTETS} octets"));
            return self.refuse(connection, Stage::EndOfData, reply, None).await;
        }
        if let Some(reply) = self.refusal(Stage::EndOfData) {
            return self.refuse(connection, Stage::EndOfData, reply, None).await;
        }
        let Some(transaction) = &self.transaction else {
            return Err(io::Error::other("end of data without a transaction"));
        };

        let helo = self.helo.clone().unwrap_or_default();
        let envelope = Envelope { client_ip: self.client_ip, helo: &helo, mail_from: &transaction.mail_from };
        let config = &self.shared.config;
        let authentication =
            auth::authenticate(&self.shared.authenticator, &config.hostname, config.check_iprev, envelope, &message)
                .await;

        let rule_folder = match &self.action {
            Action::Accept { folder, .. } | Action::DeferAfter { folder, .. } => *folder,
            _ => Folder::Inbox,
        };
        let folder =
            if rule_folder == Folder::Junk || (config.junk_on_dmarc_fail && authentication.summary.dmarc_failed()) {
                Folder::Junk
            } else {
                Folder::Inbox
            };
        debug!(client_ip = %self.client_ip, queue_id = %transaction.queue_id, ?folder, "delivering");

        // The delivered copy starts with what the final delivery adds, then
        // this hop's verdicts, then its trace, then the message as received.
        let received = auth::received(
            envelope,
            &config.hostname,
            self.esmtp,
            self.tls,
            &transaction.queue_id,
            &transaction.rcpt_to,
            Utc::now(),
        );
        let copy = [
            auth::return_path(&transaction.mail_from).as_bytes(),
            authentication.header.as_bytes(),
            received.as_bytes(),
            &message,
        ]
        .concat();

        let maildir = self.shared.maildir.clone();
        let recipients = transaction.rcpt_to.clone();
        let delivered = tokio::task::spawn_blocking(move || {
            recipients.iter().map(|recipient| maildir.deliver(recipient, folder, &copy)).collect::<io::Result<Vec<_>>>()
        })
        .await
        .map_err(io::Error::other)?;
        let delivered = match delivered {
            Ok(paths) => paths,
            Err(error) => {
                // NOTE: copies already written for earlier recipients stay in
                // place, so the client's retry after this 451 duplicates them.
                warn!(client_ip = %self.client_ip, queue_id = %transaction.queue_id, %error, "delivery into the Maildir failed");
                let reply = Reply::new(451, "4.3.0 Error: local delivery failed, try again later");
                return self.refuse(connection, Stage::EndOfData, reply, None).await;
            }
        };

        let reply = match &self.action {
            Action::Accept { reply: Some(reply), .. } => reply.fill(&self.reply_context()),
            _ => Reply::new(250, format!("2.0.0 Ok: queued as {}", transaction.queue_id)),
        };
        if matches!(self.action, Action::DeferAfter { .. }) {
            self.shared.count_accepted(self.client_ip);
        }
        let mut event = self.event(Stage::EndOfData, SimOutcome::Accepted, reply.to_string(), None);
        event.folder = Some(folder);
        event.delivered = delivered;
        event.auth = Some(authentication.summary);
        self.shared.record(event);
        self.respond(connection, reply).await
    }

    async fn starttls(&mut self, connection: &mut Connection, arguments: &str) -> io::Result<Flow> {
        if self.tls {
            return self.protocol_error(connection, Reply::new(503, "5.5.1 Error: TLS already active")).await;
        }
        if !arguments.is_empty() {
            return self.protocol_error(connection, Reply::new(501, "5.5.4 Syntax: STARTTLS")).await;
        }
        self.send(connection, &Reply::new(220, "2.0.0 Ready to start TLS")).await?;
        Ok(Flow::StartTls)
    }

    /// RFC 3207 section 4.2: after the handshake the client starts over
    /// with EHLO, and nothing learned before it is kept.
    fn reset_after_tls(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.transaction = None;
    }

    /// Returns the policy's reply for this stage when the client's action
    /// refuses the session here.
    fn refusal(&self, stage: Stage) -> Option<Reply> {
        let reply = match &self.action {
            Action::Defer { stage: at, reply } | Action::Reject { stage: at, reply } if *at == stage => reply,
            Action::DeferAfter { stage: at, after, window, reply, .. } if *at == stage => {
                let accepted = self.shared.accepted_within(self.client_ip, *window);
                // NOTE: messages are counted when they are accepted, so two
                // sessions that pass this check at the same time can together
                // go over `after`.
                if accepted < *after as usize {
                    return None;
                }
                debug!(client_ip = %self.client_ip, accepted, after, "defer-after limit reached");
                reply
            }
            _ => return None,
        };
        Some(reply.fill(&self.reply_context()))
    }

    /// Sends a policy refusal (or relay denial, or size limit) and records it.
    async fn refuse(
        &mut self,
        connection: &mut Connection,
        stage: Stage,
        reply: Reply,
        recipient: Option<String>,
    ) -> io::Result<Flow> {
        let outcome = if reply.is_transient() { SimOutcome::Deferred } else { SimOutcome::Rejected };
        let event = self.event(stage, outcome, reply.to_string(), recipient);
        self.shared.record(event);
        self.respond(connection, reply).await
    }

    fn event(&self, stage: Stage, outcome: SimOutcome, reply: String, recipient: Option<String>) -> SimEvent {
        let transaction = self.transaction.as_ref();
        let rcpt_to = match recipient {
            Some(recipient) => vec![recipient],
            None => transaction.map(|transaction| transaction.rcpt_to.clone()).unwrap_or_default(),
        };
        SimEvent {
            time: Utc::now(),
            client_ip: self.client_ip,
            rule: self.rule,
            stage,
            outcome,
            reply,
            tls: self.tls,
            helo: self.helo.clone(),
            mail_from: transaction.map(|transaction| transaction.mail_from.clone()),
            rcpt_to,
            queue_id: transaction.map(|transaction| transaction.queue_id.clone()),
            folder: None,
            delivered: Vec::new(),
            auth: None,
        }
    }

    fn reply_context(&self) -> ReplyContext<'_> {
        ReplyContext {
            ip: self.client_ip,
            hostname: &self.shared.config.hostname,
            queue_id: self.transaction.as_ref().map_or(&self.connection_id, |transaction| &transaction.queue_id),
        }
    }

    /// Sends a reply; a 421 closes the session, as RFC 5321 section 3.8 has it.
    async fn respond(&mut self, connection: &mut Connection, reply: Reply) -> io::Result<Flow> {
        self.send(connection, &reply).await?;
        Ok(if reply.closes_connection() { Flow::Close } else { Flow::Continue })
    }

    /// Replies to a command the session cannot take. The error that reaches
    /// `max_errors` is answered 421 instead, and the session closes.
    async fn protocol_error(&mut self, connection: &mut Connection, reply: Reply) -> io::Result<Flow> {
        self.errors += 1;
        if self.errors >= self.shared.config.max_errors {
            debug!(client_ip = %self.client_ip, errors = self.errors, "too many protocol errors; closing");
            let hostname = &self.shared.config.hostname;
            let closing = Reply::new(421, format!("4.7.0 {hostname} Error: too many errors"));
            return self.respond(connection, closing).await;
        }
        self.respond(connection, reply).await
    }

    async fn send(&self, connection: &mut Connection, reply: &Reply) -> io::Result<()> {
        trace!(client_ip = %self.client_ip, reply = %reply, "sent");
        let stream = connection.get_mut();
        stream.write_all(reply.to_wire().as_bytes()).await?;
        stream.flush().await
    }

    /// Reads one line, replying 421 when the idle timeout passes or the
    /// simulator shuts down.
    async fn next_line(&mut self, connection: &mut Connection, shutdown: &mut Shutdown) -> io::Result<Input> {
        enum Wait {
            Read(Result<io::Result<Input>, tokio::time::error::Elapsed>),
            Shutdown,
        }

        let idle_timeout = self.shared.config.idle_timeout;
        let wait = tokio::select! {
            read = tokio::time::timeout(idle_timeout, read_line(connection)) => Wait::Read(read),
            _ = shutdown.recv() => Wait::Shutdown,
        };

        let hostname = self.shared.config.hostname.clone();
        match wait {
            Wait::Read(Ok(input)) => input,
            Wait::Read(Err(_)) => {
                debug!(client_ip = %self.client_ip, ?idle_timeout, "idle timeout; closing");
                self.send(connection, &Reply::new(421, format!("4.4.2 {hostname} Error: timeout exceeded"))).await?;
                Ok(Input::Closed)
            }
            Wait::Shutdown => {
                let reply =
                    Reply::new(421, format!("4.3.2 {hostname} Service shutting down, closing transmission channel"));
                self.send(connection, &reply).await?;
                Ok(Input::Closed)
            }
        }
    }

    /// Reads message content up to the final dot, removing the leading dot
    /// of stuffed lines (RFC 5321 section 4.5.2). Content over
    /// `max_message_size` is read but not kept. With `stop_after`, returns as
    /// soon as that many octets have arrived.
    async fn read_data(
        &mut self,
        connection: &mut Connection,
        shutdown: &mut Shutdown,
        stop_after: Option<u64>,
    ) -> io::Result<Data> {
        let max = usize::try_from(self.shared.config.max_message_size).unwrap_or(usize::MAX);
        let mut message = Vec::new();
        let mut oversize = false;
        let mut line_too_long = false;
        let mut received: u64 = 0;

        loop {
            let line = match self.next_line(connection, shutdown).await? {
                Input::Line(line) => line,
                Input::TooLong => {
                    line_too_long = true;
                    continue;
                }
                Input::Closed => return Ok(Data::Closed),
            };
            if line == b".\r\n" || line == b".\n" {
                return Ok(Data::Complete { message, oversize, line_too_long });
            }

            received += line.len() as u64;
            let content = line.strip_prefix(b".").unwrap_or(&line);
            if message.len() + content.len() <= max {
                message.extend_from_slice(content);
            } else {
                oversize = true;
            }
            if stop_after.is_some_and(|limit| received >= limit) {
                return Ok(Data::Cut { received });
            }
        }
    }
}

/// Reads up to and including the next LF. A line over [`MAX_LINE_OCTETS`]
/// is consumed to its end and reported as too long. End of stream in the
/// middle of a line counts as closed.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Input> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Input::Closed);
        }
        let (length, complete) = match available.iter().position(|byte| *byte == b'\n') {
            Some(index) => (index + 1, true),
            None => (available.len(), false),
        };
        if !too_long && line.len() + length <= MAX_LINE_OCTETS {
            line.extend_from_slice(&available[..length]);
        } else {
            too_long = true;
            line.clear();
        }
        reader.consume(length);
        if complete {
            return Ok(if too_long { Input::TooLong } else { Input::Line(line) });
        }
    }
}

/// Generates a random 10-digit hexadecimal id, in the style of Postfix
/// queue ids.
fn new_queue_id() -> String {
    format!("{:010X}", rand::random::<u64>() & 0xFF_FFFF_FFFF)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Splits `<path> parameters` into the address (without brackets or a
/// source route) and the parameters. Tolerates a space after the colon and
/// a path without brackets, as many servers do.
fn parse_path(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    let (path, parameters) = match text.strip_prefix('<') {
        Some(rest) => {
            let close = rest.find('>')?;
            (&rest[..close], &rest[close + 1..])
        }
        None => text.split_once(' ').unwrap_or((text, "")),
    };
    // A source route (`@relay:user@domain`) is ignored (RFC 5321 section 4.1.2).
    let path = match path.strip_prefix('@') {
        Some(_) => path.split_once(':').map_or(path, |(_, address)| address),
        None => path,
    };
    Some((path.to_string(), parameters))
}

/// Checks that `address` is a mailbox `local@domain` with printable
/// characters and no spaces.
fn is_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && address.chars().all(|c| !c.is_control() && !c.is_whitespace())
        }
        None => false,
    }
}

/// Checks a recipient and lowercases its domain. Refuses characters that
/// would make the address unusable as a directory name.
fn normalize_recipient(address: &str) -> Option<String> {
    if !is_address(address) || address.contains(['/', '\\']) {
        return None;
    }
    let (local, domain) = address.rsplit_once('@')?;
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_path_variants() {
        assert_eq!(parse_path("<a@example.com> SIZE=10"), Some(("a@example.com".into(), " SIZE=10")));
        assert_eq!(parse_path(" <a@example.com>"), Some(("a@example.com".into(), "")));
        assert_eq!(parse_path("<>"), Some((String::new(), "")));
        assert_eq!(parse_path("a@example.com BODY=8BITMIME"), Some(("a@example.com".into(), "BODY=8BITMIME")));
        assert_eq!(parse_path("<@relay.example:a@example.com>"), Some(("a@example.com".into(), "")));
        assert_eq!(parse_path("<a@example.com"), None);
    }

    #[test]
    fn recipient_with_separator_is_refused() {
        assert_eq!(normalize_recipient("seed@Customer-A.Example.NET").as_deref(), Some("seed@customer-a.example.net"));
        assert_eq!(normalize_recipient("../x@customer-a.example.net"), None);
        assert_eq!(normalize_recipient("seed"), None);
        assert_eq!(normalize_recipient("a b@example.net"), None);
    }

    #[tokio::test]
    async fn read_line_reports_long_lines() {
        let long = format!("{}\r\nNOOP\r\n", "x".repeat(MAX_LINE_OCTETS + 10));
        let mut reader = BufReader::new(long.as_bytes());
        assert!(matches!(read_line(&mut reader).await.unwrap(), Input::TooLong));
        let Input::Line(line) = read_line(&mut reader).await.unwrap() else { panic!("expected a line") };
        assert_eq!(line, b"NOOP\r\n");
        assert!(matches!(read_line(&mut reader).await.unwrap(), Input::Closed));
    }

    #[test]
    fn queue_ids_are_ten_hex_digits() {
        let id = new_queue_id();
        assert_eq!(id.len(), 10);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
