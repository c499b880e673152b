//! One SMTP attempt (RFC 5321): connect from a chosen source IP, read the
//! greeting, EHLO, STARTTLS (RFC 3207), MAIL, RCPT, DATA and QUIT, recording
//! every command and reply.
//!
//! An attempt never returns an error. A reply that defers or rejects the
//! message and a connection that fails are both outcomes, stored in the
//! [`Transaction`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use super::data;
use super::record::{Exchange, Failure, Outcome, Reply, Step, Transaction};
use super::reply::ReplyClass;
use super::tls::{self, TlsPolicy};
use super::transcript::mask_command;
use super::wire::{self, ReadError, Stream};

/// When to upgrade the connection with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartTls {
    /// Upgrade when the server offers STARTTLS. Go on in the clear when it
    /// does not, or when its reply to STARTTLS is a 4xx or 5xx other than 421.
    #[default]
    Opportunistic,
    /// End the attempt as failed when the server does not offer STARTTLS.
    Required,
    /// Never upgrade, even when offered.
    Never,
}

/// How long each step may wait. The defaults are the minimums of RFC 5321
/// section 4.5.3.2, which servers expect clients to honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect. RFC 5321 sets no limit, so the 30 s default is this
    /// crate's choice.
    pub connect: Duration,
    /// The 220 greeting.
    pub greeting: Duration,
    /// EHLO, HELO, STARTTLS and the TLS handshake, MAIL and RCPT.
    pub command: Duration,
    /// The 354 reply to DATA.
    pub data_initiation: Duration,
    /// Writing the message content and reading the reply to the final `.`.
    pub end_of_data: Duration,
    /// The reply to QUIT. RFC 5321 sets none, and the outcome is decided by
    /// then, so the wait is short.
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * 60),
            command: Duration::from_secs(5 * 60),
            data_initiation: Duration::from_secs(2 * 60),
            end_of_data: Duration::from_secs(10 * 60),
            quit: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// Sets every timeout to the same value, as tests against local servers do.
    pub fn all(limit: Duration) -> Self {
        Self {
            connect: limit,
            greeting: limit,
            command: limit,
            data_initiation: limit,
            end_of_data: limit,
            quit: limit,
        }
    }
}

/// Everything one attempt needs: where to connect, from where, and what to send.
#[derive(Clone)]
pub struct AttemptRequest {
    pub server: SocketAddr,
    /// The MX (or routed) host name `server` was resolved from. It is also
    /// the TLS server name unless [`TlsPolicy::server_name`] sets another.
    pub mx_host: String,
    /// The local address to bind before connecting. When absent, the system
    /// picks one.
    pub source_ip: Option<IpAddr>,
    /// The name sent with EHLO or HELO.
    pub helo: String,
    pub starttls: StartTls,
    pub tls: TlsPolicy,
    /// The envelope sender without angle brackets, or empty for the null sender.
    pub mail_from: String,
    /// The one envelope recipient, without angle brackets.
    pub rcpt_to: String,
    /// The message as composed and signed, headers and body.
    pub message: Arc<[u8]>,
    pub timeouts: Timeouts,
}

impl fmt::Debug for AttemptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptRequest")
            .field("server", &self.server)
            .field("mx_host", &self.mx_host)
            .field("source_ip", &self.source_ip)
            .field("helo", &self.helo)
            .field("starttls", &self.starttls)
            .field("tls", &self.tls)
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("message_bytes", &self.message.len())
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// Runs one SMTP transaction and returns its record. Every failure, from a
/// source IP that cannot be bound to a dropped connection, is a value in the
/// returned [`Transaction`].
pub async fn attempt(request: &AttemptRequest) -> Transaction {
    let started_at = now();
    let mut session = Session::new(request);
    let ending = session.run().await;

    tracing::debug!(
        server = %request.server,
        mx = %request.mx_host,
        outcome = ?ending.outcome,
        failure = ?ending.failure,
        "attempt finished"
    );
    Transaction {
        mx_host: request.mx_host.clone(),
        server: request.server,
        local: session.local,
        started_at,
        finished_at: now(),
        exchanges: session.exchanges,
        tls: session.tls,
        outcome: ending.outcome,
        failure: ending.failure,
        decisive: ending.decisive,
    }
}

/// EHLO reply codes after which HELO is tried: the server does not know EHLO
/// (500, 502), does not implement it (504), or some old servers' 550.
const EHLO_FALLBACK_CODES: [u16; 4] = [500, 502, 504, 550];

/// The state in which the conversation ended, before QUIT.
#[derive(Debug)]
struct Ending {
    outcome: Outcome,
    failure: Option<Failure>,
    decisive: Option<usize>,
    /// Whether the session is still in step, so that QUIT can be sent.
    send_quit: bool,
}

impl Ending {
    fn accepted(index: usize) -> Self {
        Self { outcome: Outcome::Accepted, failure: None, decisive: Some(index), send_quit: true }
    }

    fn failed(failure: Failure) -> Self {
        Self { outcome: Outcome::Failed, failure: Some(failure), decisive: None, send_quit: false }
    }

    /// A 4xx or 5xx reply. After 421 the server closes the connection
    /// (RFC 5321 section 3.8), so QUIT is not sent.
    fn negative(index: usize, reply: &Reply) -> Self {
        let outcome = if reply.is_transient() { Outcome::Deferred } else { Outcome::Rejected };
        Self { outcome, failure: None, decisive: Some(index), send_quit: reply.code != Some(421) }
    }
}

type StepResult<T> = Result<T, Ending>;

struct Session<'a> {
    request: &'a AttemptRequest,
    /// The connection, absent before connect and after a failed TLS handshake.
    reader: Option<BufReader<Stream>>,
    exchanges: Vec<Exchange>,
    tls: Option<super::record::TlsInfo>,
    local: Option<SocketAddr>,
    /// EHLO keywords of the last EHLO reply in upper case, empty after HELO.
    extensions: Vec<String>,
    /// The message content after line-ending normalisation and dot-stuffing.
    content: Vec<u8>,
}

impl<'a> Session<'a> {
    fn new(request: &'a AttemptRequest) -> Self {
        Self {
            request,
            reader: None,
            exchanges: Vec::new(),
            tls: None,
            local: None,
            extensions: Vec::new(),
            content: Vec::new(),
        }
    }

    async fn run(&mut self) -> Ending {
        if let Err(ending) = check_request(self.request) {
            return ending;
        }
        self.content = data::encode(&self.request.message);

        let ending = match self.converse().await {
            Ok(ending) | Err(ending) => ending,
        };
        if ending.send_quit {
            self.quit().await;
        }
        ending
    }

    async fn converse(&mut self) -> StepResult<Ending> {
        self.connect().await?;
        self.greeting().await?;
        self.hello().await?;
        self.starttls().await?;
        self.mail().await?;
        self.rcpt().await?;
        self.data().await?;
        let index = self.content().await?;
        Ok(Ending::accepted(index))
    }

    async fn connect(&mut self) -> StepResult<()> {
        let request = self.request;
        let index = self.begin(Step::Connect, None);

        let socket = match request.server {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|error| io_failure(Step::Connect, &error))?;
        if let Some(source_ip) = request.source_ip {
            bind(&socket, source_ip, request.server)?;
        }

        let limit = request.timeouts.connect;
        let stream = match tokio::time::timeout(limit, socket.connect(request.server)).await {
            Err(_) => return Err(timed_out(Step::Connect, limit)),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                let detail = format!("{} ({}) refused the connection: {error}", request.server, request.mx_host);
                return Err(Ending::failed(Failure::ConnectionRefused { detail }));
            }
            Ok(Err(error)) => return Err(io_failure(Step::Connect, &error)),
            Ok(Ok(stream)) => stream,
        };

        // Every command is a whole line sent in one write, followed by a wait
        // for the reply, so Nagle's algorithm can only delay a segment until
        // the server's delayed ACK (40 ms on Linux), never merge anything.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "setting TCP_NODELAY failed");
        }
        self.local = stream.local_addr().ok();
        self.exchanges[index].replied_at = Some(now());
        tracing::debug!(server = %request.server, local = ?self.local, "connected");
        self.reader = Some(BufReader::new(Stream::Plain(stream)));
        Ok(())
    }

    async fn greeting(&mut self) -> StepResult<()> {
        let index = self.begin(Step::Greeting, None);
        let reply = self.exchange(index, Step::Greeting, &[], self.request.timeouts.greeting).await?;
        judge(index, Step::Greeting, &reply, ReplyClass::PositiveCompletion)
    }

    /// Sends EHLO, and HELO when the server does not know EHLO.
    async fn hello(&mut self) -> StepResult<()> {
        let limit = self.request.timeouts.command;
        let (index, reply) = self.command(Step::Ehlo, &format!("EHLO {}", self.request.helo), limit).await?;

        if reply.class() == Some(ReplyClass::PositiveCompletion) {
            self.extensions = extensions(&reply);
            tracing::debug!(extensions = ?self.extensions, "EHLO accepted");
            return Ok(());
        }
        let falls_back = reply.code.is_some_and(|code| EHLO_FALLBACK_CODES.contains(&code));
        if !falls_back {
            return judge(index, Step::Ehlo, &reply, ReplyClass::PositiveCompletion);
        }

        tracing::debug!(code = ?reply.code, "EHLO not accepted, trying HELO");
        let (index, reply) = self.command(Step::Helo, &format!("HELO {}", self.request.helo), limit).await?;
        self.extensions.clear();
        judge(index, Step::Helo, &reply, ReplyClass::PositiveCompletion)
    }

    async fn starttls(&mut self) -> StepResult<()> {
        let mode = self.request.starttls;
        let offered = self.offers("STARTTLS");
        match (mode, offered) {
            (StartTls::Never, _) => {
                tracing::debug!(offered, "STARTTLS mode is never, staying in the clear");
                return Ok(());
            }
            (StartTls::Opportunistic, false) => {
                tracing::debug!("STARTTLS not offered, going on in the clear");
                return Ok(());
            }
            (StartTls::Required, false) => {
                tracing::debug!("STARTTLS required but not offered");
                let mut ending = Ending::failed(Failure::StarttlsNotOffered);
                ending.send_quit = true;
                return Err(ending);
            }
            (StartTls::Opportunistic | StartTls::Required, true) => {}
        }

        let limit = self.request.timeouts.command;
        let (index, reply) = self.command(Step::Starttls, "STARTTLS", limit).await?;
        let refused = reply.is_transient() || reply.is_permanent();
        if mode == StartTls::Opportunistic && refused && reply.code != Some(421) {
            // The session state is unchanged after a refused STARTTLS
            // (RFC 3207), so the transaction can go on in the clear.
            tracing::debug!(code = ?reply.code, "STARTTLS rejected; continuing without TLS");
            return Ok(());
        }
        judge(index, Step::Starttls, &reply, ReplyClass::PositiveCompletion)?;

        self.handshake().await?;
        // RFC 3207 makes the client discard what it learned before TLS, so
        // EHLO is sent again for the extensions offered inside TLS.
        self.hello().await
    }

    async fn handshake(&mut self) -> StepResult<()> {
        let request = self.request;
        let index = self.begin(Step::TlsHandshake, None);
        let Some(reader) = self.reader.take() else {
            return Err(Ending::failed(Failure::ConnectionDropped { step: Step::TlsHandshake }));
        };

        // Bytes that follow the 220 in the clear could be replies to commands
        // an attacker injected, so they end the attempt.
        if !reader.buffer().is_empty() {
            let detail = format!(
                "the server sent {} after its STARTTLS reply, before the TLS handshake",
                wire::quote(reader.buffer())
            );
            return Err(Ending::failed(Failure::Protocol { step: Step::Starttls, detail }));
        }
        let tcp = match reader.into_inner() {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) => {
                let detail = "STARTTLS accepted inside TLS".to_owned();
                return Err(Ending::failed(Failure::Protocol { step: Step::Starttls, detail }));
            }
        };

        let name = request.tls.server_name.as_deref().unwrap_or(&request.mx_host);
        let server_name = tls::server_name(name).map_err(|detail| Ending::failed(Failure::Tls { detail }))?;
        let (config, verify_result) =
            tls::client_config(&request.tls).map_err(|detail| Ending::failed(Failure::Tls { detail }))?;
        tracing::debug!(server_name = name, verify = request.tls.verify, "starting TLS handshake");

        let limit = request.timeouts.command;
        let connector = TlsConnector::from(config);
        let stream = match tokio::time::timeout(limit, connector.connect(server_name, tcp)).await {
            Err(_) => return Err(timed_out(Step::TlsHandshake, limit)),
            Ok(Err(error)) => {
                let detail = format!("TLS handshake with {name} failed: {error}");
                return Err(Ending::failed(Failure::Tls { detail }));
            }
            Ok(Ok(stream)) => stream,
        };

        let info = tls::tls_info(stream.get_ref().1, &verify_result);
        tracing::debug!(version = %info.version, cipher = %info.cipher, verified = info.verified, "TLS established");
        self.tls = Some(info);
        self.exchanges[index].replied_at = Some(now());
        self.reader = Some(BufReader::new(Stream::Tls(Box::new(stream))));
        Ok(())
    }

    async fn mail(&mut self) -> StepResult<()> {
        let request = self.request;
        let mut line = format!("MAIL FROM:<{}>", request.mail_from);

        if data::has_eight_bit(&request.message) {
            if self.offers("8BITMIME") {
                line.push_str(" BODY=8BITMIME");
            } else {
                // NOTE: the message is sent unchanged, because converting it to
                // 7 bit would break its DKIM signature. Such a server may reject it.
                tracing::debug!("8-bit message, but the server does not offer 8BITMIME");
            }
        }
        if !request.mail_from.is_ascii() || !request.rcpt_to.is_ascii() {
            if self.offers("SMTPUTF8") {
                line.push_str(" SMTPUTF8");
            } else {
                tracing::debug!("non-ASCII address, but the server does not offer SMTPUTF8");
            }
        }
        if self.offers("SIZE") {
            line.push_str(&format!(" SIZE={}", self.content.len()));
        }

        let (index, reply) = self.command(Step::Mail, &line, request.timeouts.command).await?;
        judge(index, Step::Mail, &reply, ReplyClass::PositiveCompletion)
    }

    async fn rcpt(&mut self) -> StepResult<()> {
        let line = format!("RCPT TO:<{}>", self.request.rcpt_to);
        let limit = self.request.timeouts.command;
        let (index, reply) = self.command(Step::Rcpt, &line, limit).await?;
        judge(index, Step::Rcpt, &reply, ReplyClass::PositiveCompletion)
    }

    async fn data(&mut self) -> StepResult<()> {
        let limit = self.request.timeouts.data_initiation;
        let (index, reply) = self.command(Step::Data, "DATA", limit).await?;
        judge(index, Step::Data, &reply, ReplyClass::PositiveIntermediate)
    }

    /// Sends the message content and the final `.`, and returns the index of
    /// the exchange that contains the reply.
    async fn content(&mut self) -> StepResult<usize> {
        let index = self.begin(Step::EndOfData, Some(".".to_owned()));
        let mut content = std::mem::take(&mut self.content);
        self.exchanges[index].size = Some(content.len() as u64);
        tracing::trace!(target: "mailcanary::smtp::wire", "C: <message content, {} bytes>", content.len());
        tracing::trace!(target: "mailcanary::smtp::wire", "C: .");

        // The final `.` goes out in the same write as the content, because
        // written alone its small segment waited for the previous one's ACK.
        content.extend_from_slice(data::END_OF_DATA);
        let limit = self.request.timeouts.end_of_data;
        let reply = self.exchange(index, Step::EndOfData, &[&content], limit).await?;
        judge(index, Step::EndOfData, &reply, ReplyClass::PositiveCompletion)?;
        Ok(index)
    }

    /// Sends QUIT and reads its reply. Its failure is logged and never changes
    /// the outcome.
    async fn quit(&mut self) {
        if self.reader.is_none() {
            return;
        }
        let limit = self.request.timeouts.quit;
        if let Err(ending) = self.command(Step::Quit, "QUIT", limit).await {
            tracing::debug!(failure = ?ending.failure, "QUIT failed");
        }
        if let Some(reader) = self.reader.as_mut() {
            // Sends TLS close_notify and the TCP FIN. The server may be gone
            // already, so errors are ignored.
            let _ = tokio::time::timeout(limit, reader.get_mut().shutdown()).await;
        }
    }

    /// Records and sends one command line, then reads its reply.
    async fn command(&mut self, step: Step, line: &str, limit: Duration) -> StepResult<(usize, Reply)> {
        let masked = mask_command(line);
        tracing::trace!(target: "mailcanary::smtp::wire", "C: {masked}");
        let index = self.begin(step, Some(masked));

        let mut payload = Vec::with_capacity(line.len() + 2);
        payload.extend_from_slice(line.as_bytes());
        payload.extend_from_slice(b"\r\n");
        let reply = self.exchange(index, step, &[&payload], limit).await?;
        Ok((index, reply))
    }

    /// Writes `parts` and reads one reply within `limit`, storing the reply in
    /// exchange `index`.
    async fn exchange(&mut self, index: usize, step: Step, parts: &[&[u8]], limit: Duration) -> StepResult<Reply> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(Ending::failed(Failure::ConnectionDropped { step }));
        };

        let result = tokio::time::timeout(limit, async {
            for part in parts {
                reader.get_mut().write_all(part).await.map_err(ReadError::Io)?;
            }
            if !parts.is_empty() {
                reader.get_mut().flush().await.map_err(ReadError::Io)?;
            }
            wire::read_reply(reader).await
        })
        .await;

        let reply = match result {
            Err(_) => return Err(timed_out(step, limit)),
            Ok(Err(error)) => return Err(Ending::failed(read_failure(step, error))),
            Ok(Ok(reply)) => reply,
        };
        let exchange = &mut self.exchanges[index];
        exchange.reply = Some(reply.clone());
        exchange.replied_at = Some(now());
        Ok(reply)
    }

    fn begin(&mut self, step: Step, command: Option<String>) -> usize {
        self.exchanges.push(Exchange { step, command, sent_at: now(), reply: None, replied_at: None, size: None });
        self.exchanges.len() - 1
    }

    fn offers(&self, keyword: &str) -> bool {
        self.extensions.iter().any(|offered| offered == keyword)
    }
}

/// Checks that nothing the request puts into a command line can end that
/// line early or break its syntax.
fn check_request(request: &AttemptRequest) -> StepResult<()> {
    let is_unsafe = |c: char| c.is_ascii_control() || c == '<' || c == '>';
    let fields = [
        (Step::Ehlo, "HELO name", &request.helo),
        (Step::Mail, "envelope sender", &request.mail_from),
        (Step::Rcpt, "envelope recipient", &request.rcpt_to),
    ];

    for (step, what, value) in fields {
        let helo_is_bad = step == Step::Ehlo && (value.is_empty() || value.contains(' '));
        if value.contains(is_unsafe) || helo_is_bad {
            let detail = format!(
                "invalid {what} {value:?}: it contains a control character, '<' or '>', or it is a HELO name \
                 that is empty or contains a space. Nothing was sent. Fix the value in the scenario"
            );
            return Err(Ending::failed(Failure::Protocol { step, detail }));
        }
    }
    Ok(())
}

/// Binds the socket to `source_ip` with a port the system picks.
fn bind(socket: &TcpSocket, source_ip: IpAddr, server: SocketAddr) -> StepResult<()> {
    if source_ip.is_ipv4() != server.is_ipv4() {
        let detail = format!(
            "source IP {source_ip} and server {server} are of different address families. \
             Choose a source IP of the server's family"
        );
        return Err(Ending::failed(Failure::Bind { source_ip, detail }));
    }

    socket.bind(SocketAddr::new(source_ip, 0)).map_err(|error| {
        tracing::debug!(%source_ip, %error, "bind failed");
        let detail = format!(
            "binding {source_ip} failed: {error}. Configure the address on an interface of this host, \
             or choose a source IP this host has"
        );
        Ending::failed(Failure::Bind { source_ip, detail })
    })
}

/// Judges a reply at `step`: the expected class goes on, 4xx and 5xx end the
/// attempt with that outcome, anything else is a protocol failure.
fn judge(index: usize, step: Step, reply: &Reply, expected: ReplyClass) -> StepResult<()> {
    match reply.class() {
        Some(class) if class == expected => Ok(()),
        Some(ReplyClass::TransientNegative | ReplyClass::PermanentNegative) => Err(Ending::negative(index, reply)),
        _ => {
            let first_line = reply.lines.first().map(String::as_str).unwrap_or_default();
            let detail = format!("unexpected reply at the {step} step: {first_line:?}");
            Err(Ending {
                outcome: Outcome::Failed,
                failure: Some(Failure::Protocol { step, detail }),
                decisive: Some(index),
                send_quit: true,
            })
        }
    }
}

/// Reads the EHLO keywords (RFC 5321) from the lines after the first, in
/// upper case.
fn extensions(reply: &Reply) -> Vec<String> {
    reply
        .lines
        .iter()
        .skip(1)
        .filter_map(|line| line.get(4..))
        .filter_map(|text| text.split_ascii_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect()
}

fn read_failure(step: Step, error: ReadError) -> Failure {
    match error {
        ReadError::Closed => Failure::ConnectionDropped { step },
        ReadError::Truncated(bytes) => Failure::Protocol {
            step,
            detail: format!("reply truncated: the connection closed after {}", wire::quote(&bytes)),
        },
        ReadError::LineTooLong(start) => Failure::Protocol {
            step,
            detail: format!("reply line longer than {} bytes, starting {}", wire::MAX_LINE_LEN, wire::quote(&start)),
        },
        ReadError::TooManyLines => {
            Failure::Protocol { step, detail: format!("reply longer than {} lines", wire::MAX_REPLY_LINES) }
        }
        ReadError::Invalid(error) => Failure::Protocol { step, detail: error.to_string() },
        ReadError::Io(error) => match io_failure(step, &error).failure {
            Some(failure) => failure,
            None => Failure::Io { step, detail: error.to_string() },
        },
    }
}

/// Maps an I/O error: a reset or closed connection is a dropped connection,
/// anything else an I/O failure.
fn io_failure(step: Step, error: &std::io::Error) -> Ending {
    use std::io::ErrorKind;

    let failure = match error.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Failure::ConnectionDropped { step },
        _ => Failure::Io { step, detail: error.to_string() },
    };
    Ending::failed(failure)
}

fn timed_out(step: Step, limit: Duration) -> Ending {
    tracing::debug!(?step, ?limit, "timed out");
    let after_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    Ending::failed(Failure::TimedOut { step, after_ms })
}

/// Returns the current UTC time truncated to the millisecond, as records keep it.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Reply {
        let lines: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
        Reply::parse_lines(&lines).unwrap()
    }

    #[test]
    fn extensions_read_upper_case() {
        let reply = reply(&["250-mx.test greets you", "250-starttls", "250-SIZE 1000", "250 8BITMIME"]);
        assert_eq!(extensions(&reply), ["STARTTLS", "SIZE", "8BITMIME"]);
    }

    #[test]
    fn judge_421_skips_quit() {
        let ending = judge(1, Step::Rcpt, &reply(&["421 closing"]), ReplyClass::PositiveCompletion).unwrap_err();
        assert_eq!(ending.outcome, Outcome::Deferred);
        assert!(!ending.send_quit);
    }

    #[test]
    fn judge_550_sends_quit() {
        let ending = judge(1, Step::Rcpt, &reply(&["550 no"]), ReplyClass::PositiveCompletion).unwrap_err();
        assert_eq!(ending.outcome, Outcome::Rejected);
        assert!(ending.send_quit);
    }

    #[test]
    fn judge_unexpected_class_is_protocol_failure() {
        let ending = judge(2, Step::Mail, &reply(&["354 go on"]), ReplyClass::PositiveCompletion).unwrap_err();
        assert_eq!(ending.outcome, Outcome::Failed);
        assert!(matches!(ending.failure, Some(Failure::Protocol { step: Step::Mail, .. })));
        assert_eq!(ending.decisive, Some(2));
    }

    #[test]
    fn line_break_in_recipient_rejected() {
        let request = AttemptRequest {
            server: "127.0.0.1:25".parse().unwrap(),
            mx_host: "mx.test".to_owned(),
            source_ip: None,
            helo: "client.test".to_owned(),
            starttls: StartTls::Never,
            tls: TlsPolicy::default(),
            mail_from: "a@example.com".to_owned(),
            rcpt_to: "b@example.com>\r\nRCPT TO:<c@example.com".to_owned(),
            message: Arc::from(&b"x"[..]),
            timeouts: Timeouts::default(),
        };
        let ending = check_request(&request).unwrap_err();
        assert!(matches!(ending.failure, Some(Failure::Protocol { step: Step::Rcpt, .. })));
    }

    #[test]
    fn starttls_mode_kebab_case() {
        let mode: StartTls = serde_json::from_str("\"opportunistic\"").unwrap();
        assert_eq!(mode, StartTls::Opportunistic);
        assert_eq!(serde_json::to_string(&StartTls::Required).unwrap(), "\"required\"");
    }
}
