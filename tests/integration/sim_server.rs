//! The gateway simulator end to end, with a real server on 127.0.0.1 port 0.
//! Raw SMTP clients bind 127.0.0.x source addresses so that per-IP rules
//! apply. The in-process DNS server answers from the demo zones, and the
//! tests read the delivered Maildir files back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mailcanary::dns::{Dns, DnsSettings};
use mailcanary::message::{DkimKey, DkimSigner, sign};
use mailcanary::sim::{self, Folder, SimEvent, SimHandle, SimOutcome, SimulatorToml, Stage};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const SEED: &str = "seed@customer-a.example.net";
const SENDER: &str = "bounces@news.example.com";
/// Listed in the SPF record of news.example.com.
const SPF_IP: &str = "127.0.0.10";
/// Not listed in the SPF record of news.example.com.
const OTHER_IP: &str = "127.0.0.12";
const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---- harness --------------------------------------------------------------

struct Sim {
    handle: SimHandle,
    dns: Dns,
    maildir: tempfile::TempDir,
}

impl Sim {
    fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    fn events(&self) -> Vec<SimEvent> {
        self.handle.events()
    }

    fn delivered_files(&self, address: &str, folder: Folder) -> Vec<PathBuf> {
        let mailbox = self.maildir.path().join(address);
        let new = match folder {
            Folder::Inbox => mailbox.join("new"),
            Folder::Junk => mailbox.join(".Junk/new"),
        };
        match std::fs::read_dir(new) {
            Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn stop(self) {
        self.handle.shutdown().await;
        self.dns.shutdown().await;
    }
}

fn demo_zones() -> Vec<PathBuf> {
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/zones");
    vec![zones.join("news.example.com.zone"), zones.join("customer-a.example.net.zone")]
}

/// Starts the simulator with a `[simulator]` table written without its
/// header, accepting mail for customer-a.example.net.
async fn start_sim(policy: &str) -> Sim {
    let raw: SimulatorToml = toml::from_str(policy).expect("policy parses");
    let config = sim::validate(&raw, "simulator", &["customer-a.example.net".to_string()]).expect("policy is valid");
    let dns = Dns::start(&DnsSettings { nameservers: Vec::new(), zones: demo_zones() }).await.expect("DNS starts");
    let maildir = tempfile::tempdir().unwrap();
    let handle = sim::start(config, dns.authenticator(), maildir.path().to_path_buf()).await.expect("simulator starts");
    Sim { handle, dns, maildir }
}

// ---- raw SMTP client ------------------------------------------------------

struct Client<S> {
    stream: BufReader<S>,
}

async fn connect_from(source: &str, server: SocketAddr) -> Client<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).expect("bind a loopback source address");
    let stream = socket.connect(server).await.expect("connect to the simulator");
    Client { stream: BufReader::new(stream) }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads one reply, all its lines joined by `\n`; `None` when the
    /// server closed the connection first.
    async fn reply(&mut self) -> Option<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_line(&mut line))
                .await
                .expect("a reply within the timeout");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if last {
                return Some(lines.join("\n"));
            }
        }
    }

    async fn send(&mut self, line: &str) {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
    }

    async fn command(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await.unwrap_or_else(|| panic!("no reply to {line:?}"))
    }

    /// True when the server has closed the connection.
    async fn is_closed(&mut self) -> bool {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut buffer)).await.expect("no hang");
        matches!(read, Ok(0) | Err(_))
    }

    /// Runs MAIL, RCPT, DATA and the content, and returns the final reply.
    async fn transaction(&mut self, mail_from: &str, rcpt_to: &str, message: &str) -> String {
        let mail = self.command(&format!("MAIL FROM:<{mail_from}>")).await;
        assert!(mail.starts_with("250 "), "MAIL: {mail}");
        let rcpt = self.command(&format!("RCPT TO:<{rcpt_to}>")).await;
        assert!(rcpt.starts_with("250 "), "RCPT: {rcpt}");
        let data = self.command("DATA").await;
        assert!(data.starts_with("354 "), "DATA: {data}");
        self.stream.get_mut().write_all(dot_stuff(message).as_bytes()).await.unwrap();
        self.command(".").await
    }
}

/// Doubles a leading dot on each line, as a client must before DATA.
fn dot_stuff(message: &str) -> String {
    message
        .split_inclusive("\r\n")
        .map(|line| if line.starts_with('.') { format!(".{line}") } else { line.to_string() })
        .collect()
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: Control <{from}>\r\n\
         To: <{SEED}>\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{subject}@news.example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Plain control message.\r\n\
         .a line that starts with a dot\r\n"
    )
}

fn signed_message(subject: &str) -> String {
    let pem =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/keys/demo-rsa.test-key.pem"))
            .expect("demo RSA key");
    let signer = DkimSigner {
        domain: "news.example.com".into(),
        selector: "rsa2026".into(),
        key: DkimKey::from_pem(&pem).expect("key loads"),
        headers: Vec::new(),
        expiration: None,
    };
    let signed = sign(message("control@news.example.com", subject).as_bytes(), &[signer], chrono::Utc::now()).unwrap();
    String::from_utf8(signed).unwrap()
}

async fn greeted(source: &str, sim: &Sim) -> Client<TcpStream> {
    let mut client = connect_from(source, sim.addr()).await;
    let greeting = client.reply().await.expect("greeting");
    assert!(greeting.starts_with("220 mx.sim.mailcanary.test"), "{greeting}");
    let ehlo = client.command("EHLO mta10.news.example.com").await;
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    client
}

fn header_value<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let start = message
        .find(&format!("\r\n{name}: "))
        .map(|index| index + 2)
        .or_else(|| message.starts_with(&format!("{name}: ")).then_some(0))?;
    let rest = &message[start + name.len() + 2..];
    let mut end = 0;
    for line in rest.split_inclusive("\r\n") {
        if end > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        end += line.len();
    }
    Some(&rest[..end])
}

// ---- acceptance and delivery ----------------------------------------------

#[tokio::test]
async fn accepted_message_is_delivered_with_trace_headers() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;

    let reply = client.transaction(SENDER, SEED, &message("control@news.example.com", "accept-1")).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let queue_id = reply.rsplit(' ').next().unwrap().to_string();
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");

    let files = sim.delivered_files(SEED, Folder::Inbox);
    assert_eq!(files.len(), 1);
    let copy = std::fs::read_to_string(&files[0]).unwrap();
    assert!(copy.starts_with(&format!("Return-Path: <{SENDER}>\r\n")), "{copy}");
    let results = header_value(&copy, "Authentication-Results").expect("Authentication-Results");
    assert!(results.starts_with("mx.sim.mailcanary.test;"), "{results}");
    let received = header_value(&copy, "Received").expect("Received");
    assert!(received.contains("from mta10.news.example.com ([127.0.0.10])"), "{received}");
    assert!(
        received.contains(&format!("by mx.sim.mailcanary.test (mailcanary sim) with ESMTP id {queue_id}")),
        "{received}"
    );
    assert!(received.contains(&format!("for <{SEED}>")), "{received}");
    assert!(copy.contains("\r\n.a line that starts with a dot\r\n"), "dot-unstuffed: {copy}");
    assert!(!copy.contains("\r\n..a line"), "{copy}");

    let events = sim.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.outcome, SimOutcome::Accepted);
    assert_eq!(event.client_ip.to_string(), SPF_IP);
    assert_eq!(event.helo.as_deref(), Some("mta10.news.example.com"));
    assert_eq!(event.mail_from.as_deref(), Some(SENDER));
    assert_eq!(event.rcpt_to, [SEED]);
    assert_eq!(event.queue_id.as_deref(), Some(queue_id.as_str()));
    assert_eq!(event.delivered, files);
    sim.stop().await;
}

#[tokio::test]
async fn several_recipients_get_one_copy_each() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(client.command(&format!("RCPT TO:<{SEED}>")).await.starts_with("250 "));
    assert!(client.command("RCPT TO:<Other@Customer-A.Example.NET>").await.starts_with("250 "));
    client.command("DATA").await;
    client.stream.get_mut().write_all(message("control@news.example.com", "two").as_bytes()).await.unwrap();
    assert!(client.command(".").await.starts_with("250 "));

    assert_eq!(sim.delivered_files(SEED, Folder::Inbox).len(), 1);
    let other = sim.delivered_files("Other@customer-a.example.net", Folder::Inbox);
    assert_eq!(other.len(), 1);
    let copy = std::fs::read_to_string(&other[0]).unwrap();
    assert!(!header_value(&copy, "Received").unwrap().contains("for <"), "{copy}");
    sim.stop().await;
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let sim = start_sim("max_message_size = 1000000").await;
    let mut client = connect_from(SPF_IP, sim.addr()).await;
    client.reply().await.unwrap();
    let ehlo = client.command("EHLO mta10.news.example.com").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(lines[0], "250-mx.sim.mailcanary.test Hello mta10.news.example.com [127.0.0.10]");
    assert!(lines.contains(&"250-SIZE 1000000"), "{ehlo}");
    assert!(lines.contains(&"250-8BITMIME"), "{ehlo}");
    assert!(lines.contains(&"250-ENHANCEDSTATUSCODES"), "{ehlo}");
    assert_eq!(*lines.last().unwrap(), "250 STARTTLS");
    assert_eq!(client.command("HELO mta10.news.example.com").await, "250 mx.sim.mailcanary.test");
    sim.stop().await;
}

// ---- deferrals, rejections, drops -----------------------------------------

#[tokio::test]
async fn proofpoint_defers_in_greeting_naming_client_ip() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.11"]
        action = "defer"
        reply = "proofpoint"
        "#,
    )
    .await;

    let mut client = connect_from("127.0.0.11", sim.addr()).await;
    let greeting = client.reply().await.expect("a greeting");
    assert_eq!(greeting, "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11");
    assert!(client.is_closed().await, "421 closes the connection");

    let mut other = greeted(SPF_IP, &sim).await;
    assert!(
        other.transaction(SENDER, SEED, &message("control@news.example.com", "other-ip")).await.starts_with("250 ")
    );

    let events = sim.events();
    assert_eq!(events[0].stage, Stage::Greeting);
    assert_eq!(events[0].outcome, SimOutcome::Deferred);
    assert_eq!(events[0].rule, Some(0));
    assert_eq!(events[0].reply, greeting);
    assert_eq!(events[1].rule, None);
    sim.stop().await;
}

#[tokio::test]
async fn proofpoint_defers_at_rcpt_when_staged() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.0/28"]
        action = "defer"
        reply = "proofpoint"
        stage = "rcpt"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.11", &sim).await;
    assert!(client.command(&format!("MAIL FROM:<{SENDER}>")).await.starts_with("250 "));
    let rcpt = client.command(&format!("RCPT TO:<{SEED}>")).await;
    assert_eq!(rcpt, "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11");
    assert!(client.is_closed().await);

    let event = &sim.events()[0];
    assert_eq!(event.stage, Stage::Rcpt);
    assert_eq!(event.rcpt_to, [SEED]);
    assert_eq!(event.mail_from.as_deref(), Some(SENDER));
    assert!(sim.delivered_files(SEED, Folder::Inbox).is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn reject_preset_refuses_recipients() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.13"]
        action = "reject"
        reply = "microsoft-s3150"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.13", &sim).await;
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    let rcpt = client.command(&format!("RCPT TO:<{SEED}>")).await;
    assert!(rcpt.starts_with("550 5.7.1 Unfortunately, messages from [127.0.0.13] weren't sent."), "{rcpt}");
    assert!(rcpt.contains("(S3150)"), "{rcpt}");
    assert!(rcpt.ends_with("[mx.sim.mailcanary.test]"), "{rcpt}");
    assert_eq!(client.command("DATA").await, "554 5.5.1 Error: no valid recipients");
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");

    let event = &sim.events()[0];
    assert_eq!(event.outcome, SimOutcome::Rejected);
    assert_eq!(event.reply, rcpt);
    sim.stop().await;
}

#[tokio::test]
async fn rejecting_greeting_answers_503_until_quit() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.13"]
        action = "reject"
        reply = "proofpoint-block"
        "#,
    )
    .await;

    let mut client = connect_from("127.0.0.13", sim.addr()).await;
    let greeting = client.reply().await.unwrap();
    assert_eq!(greeting, "554 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=127.0.0.13");
    assert!(client.command("EHLO mta.news.example.com").await.starts_with("503 5.5.1"));
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    sim.stop().await;
}

#[tokio::test]
async fn gmail_rate_is_multi_line_after_data() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.14"]
        action = "defer"
        reply = "gmail-rate"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.14", &sim).await;
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(client.command(&format!("RCPT TO:<{SEED}>")).await.starts_with("250 "));
    client.command("DATA").await;
    client.stream.get_mut().write_all(message("control@news.example.com", "gmail").as_bytes()).await.unwrap();
    let reply = client.command(".").await;
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 6, "{reply}");
    assert_eq!(lines[0], "421-4.7.28 [127.0.0.14] Our system has detected an unusual rate of");
    assert!(lines[5].starts_with("421 4.7.28 review our Bulk Email Senders Guidelines."), "{reply}");
    assert!(client.is_closed().await);
    assert_eq!(sim.events()[0].stage, Stage::EndOfData);
    sim.stop().await;
}

#[tokio::test]
async fn literal_reply_at_mail_fills_queue_id() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.15"]
        action = "defer"
        reply = "450-4.7.1 first line from {hostname}\nsecond line, queue {queue_id}"
        stage = "mail"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.15", &sim).await;
    let reply = client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    let event = &sim.events()[0];
    let queue_id = event.queue_id.clone().expect("a queue id at MAIL");
    assert_eq!(reply, format!("450-4.7.1 first line from mx.sim.mailcanary.test\n450 second line, queue {queue_id}"));
    // A 450 keeps the session open, and the transaction was not started.
    assert_eq!(client.command(&format!("RCPT TO:<{SEED}>")).await, "503 5.5.1 Error: need MAIL command");
    sim.stop().await;
}

#[tokio::test]
async fn defer_after_counts_messages_per_ip() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.16", "127.0.0.17"]
        action = "defer-after"
        after = 2
        window = "1h"
        reply = "microsoft-rate"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.16", &sim).await;
    for index in 0..2 {
        let reply =
            client.transaction(SENDER, SEED, &message("control@news.example.com", &format!("volume-{index}"))).await;
        assert!(reply.starts_with("250 "), "message {index}: {reply}");
    }
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    let third = client.command(&format!("RCPT TO:<{SEED}>")).await;
    assert!(third.starts_with("451 4.7.650 The mail server [127.0.0.16] has been temporarily rate limited"), "{third}");

    // The count is per client IP, across connections.
    let mut again = greeted("127.0.0.16", &sim).await;
    again.command(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(again.command(&format!("RCPT TO:<{SEED}>")).await.starts_with("451 "));
    let mut other = greeted("127.0.0.17", &sim).await;
    assert!(
        other.transaction(SENDER, SEED, &message("control@news.example.com", "volume-other")).await.starts_with("250 ")
    );

    let delivered: usize = sim.events().iter().map(|event| event.delivered.len()).sum();
    assert_eq!(delivered, 3);
    let outcomes: Vec<SimOutcome> = sim.events().iter().map(|event| event.outcome).collect();
    assert_eq!(
        outcomes,
        [SimOutcome::Accepted, SimOutcome::Accepted, SimOutcome::Deferred, SimOutcome::Deferred, SimOutcome::Accepted]
    );
    sim.stop().await;
}

#[tokio::test]
async fn defer_after_clears_when_window_passes() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.16"]
        action = "defer-after"
        after = 1
        window = "400ms"
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.16", &sim).await;
    assert!(client.transaction(SENDER, SEED, &message("control@news.example.com", "w1")).await.starts_with("250 "));
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    let deferred = client.command(&format!("RCPT TO:<{SEED}>")).await;
    assert_eq!(deferred, "451 4.7.1 Too many messages from [127.0.0.16], try again later");
    client.command("RSET").await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(client.transaction(SENDER, SEED, &message("control@news.example.com", "w2")).await.starts_with("250 "));
    sim.stop().await;
}

#[tokio::test]
async fn drop_closes_mid_data_without_reply() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.18"]
        action = "drop"
        drop_after_bytes = 100
        "#,
    )
    .await;

    let mut client = greeted("127.0.0.18", &sim).await;
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    client.command(&format!("RCPT TO:<{SEED}>")).await;
    assert!(client.command("DATA").await.starts_with("354 "));
    let body = format!("{}{}", message("control@news.example.com", "drop"), "filler line\r\n".repeat(200));
    // The server may close while the client is still writing.
    let _ = client.stream.get_mut().write_all(dot_stuff(&body).as_bytes()).await;
    let _ = client.stream.get_mut().write_all(b".\r\n").await;
    assert_eq!(client.reply().await, None, "no reply after a drop");

    let event = &sim.events()[0];
    assert_eq!(event.outcome, SimOutcome::Dropped);
    assert_eq!(event.stage, Stage::Data);
    assert_eq!(event.reply, "");
    assert!(sim.delivered_files(SEED, Folder::Inbox).is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn foreign_domain_is_relay_denied() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    let reply = client.command("RCPT TO:<someone@example.org>").await;
    assert_eq!(reply, "550 5.7.1 <someone@example.org>: relaying denied");
    assert!(client.command(&format!("RCPT TO:<{SEED}>")).await.starts_with("250 "));

    let event = &sim.events()[0];
    assert_eq!(event.outcome, SimOutcome::Rejected);
    assert_eq!(event.rcpt_to, ["someone@example.org"]);
    sim.stop().await;
}

#[tokio::test]
async fn oversize_message_is_refused_with_552() {
    let sim = start_sim("max_message_size = 2000").await;
    let mut client = greeted(SPF_IP, &sim).await;

    let declared = client.command(&format!("MAIL FROM:<{SENDER}> SIZE=5000")).await;
    assert_eq!(declared, "552 5.3.4 Message size exceeds fixed maximum message size");

    let big = format!(
        "{}{}",
        message("control@news.example.com", "big"),
        format!("{}\r\n", "0123456789".repeat(10)).repeat(30)
    );
    let reply = client.transaction(SENDER, SEED, &big).await;
    assert_eq!(reply, "552 5.3.4 Error: message file too big");

    let small = client.transaction(SENDER, SEED, &message("control@news.example.com", "small")).await;
    assert!(small.starts_with("250 "), "{small}");
    sim.stop().await;
}

// ---- protocol ---------------------------------------------------------------

#[tokio::test]
async fn commands_out_of_sequence_get_503() {
    let sim = start_sim("").await;
    let mut client = connect_from(SPF_IP, sim.addr()).await;
    client.reply().await.unwrap();

    assert_eq!(client.command(&format!("MAIL FROM:<{SENDER}>")).await, "503 5.5.1 Error: send HELO/EHLO first");
    client.command("EHLO mta10.news.example.com").await;
    assert_eq!(client.command(&format!("RCPT TO:<{SEED}>")).await, "503 5.5.1 Error: need MAIL command");
    assert_eq!(client.command("DATA").await, "503 5.5.1 Error: need RCPT command");
    client.command(&format!("MAIL FROM:<{SENDER}>")).await;
    assert_eq!(client.command(&format!("MAIL FROM:<{SENDER}>")).await, "503 5.5.1 Error: nested MAIL command");
    assert_eq!(client.command("RSET").await, "250 2.0.0 Ok");
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    assert!(client.command(&format!("VRFY {SEED}")).await.starts_with("252 "));
    assert_eq!(client.command("EXPN staff").await, "502 5.5.1 Error: command not implemented");
    assert_eq!(client.command("FROB").await, "500 5.5.2 Error: command not recognized");
    assert_eq!(client.command("MAIL TO:<x@example.com>").await, "501 5.5.4 Syntax: MAIL FROM:<address>");
    assert_eq!(client.command("EHLO").await, "501 5.5.4 Syntax: EHLO hostname");
    sim.stop().await;
}

#[tokio::test]
async fn null_sender_is_accepted() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    let reply = client.transaction("", SEED, &message("mailer-daemon@news.example.com", "bounce")).await;
    assert!(reply.starts_with("250 "), "{reply}");

    // Unsigned and without a MAIL FROM to align, the bounce fails DMARC.
    let copy = std::fs::read_to_string(&sim.delivered_files(SEED, Folder::Junk)[0]).unwrap();
    assert!(copy.starts_with("Return-Path: <>\r\n"), "{copy}");
    let results = header_value(&copy, "Authentication-Results").unwrap();
    assert!(results.contains("smtp.helo=mta10.news.example.com"), "SPF checks the HELO identity: {results}");
    sim.stop().await;
}

#[tokio::test]
async fn long_line_gets_500() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    let reply = client.command(&format!("NOOP {}", "x".repeat(3000))).await;
    assert_eq!(reply, "500 5.5.2 Error: line too long");
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    sim.stop().await;
}

#[tokio::test]
async fn too_many_errors_close_session() {
    let sim = start_sim("max_errors = 3").await;
    let mut client = greeted(SPF_IP, &sim).await;
    assert!(client.command("FROB").await.starts_with("500 "));
    assert!(client.command("FROB").await.starts_with("500 "));
    assert_eq!(client.command("FROB").await, "421 4.7.0 mx.sim.mailcanary.test Error: too many errors");
    assert!(client.is_closed().await);
    sim.stop().await;
}

#[tokio::test]
async fn idle_session_times_out_with_421() {
    let sim = start_sim(r#"idle_timeout = "300ms""#).await;
    let mut client = greeted(SPF_IP, &sim).await;
    let reply = client.reply().await.expect("a reply before the close");
    assert_eq!(reply, "421 4.4.2 mx.sim.mailcanary.test Error: timeout exceeded");
    assert!(client.is_closed().await);
    sim.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_with_421() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    let Sim { handle, dns, maildir: _maildir } = sim;

    let stopping = tokio::spawn(handle.shutdown());
    let reply = client.reply().await.expect("a reply before the close");
    assert!(reply.starts_with("421 4.3.2 mx.sim.mailcanary.test Service shutting down"), "{reply}");
    tokio::time::timeout(READ_TIMEOUT, stopping).await.expect("shutdown completes").unwrap();
    dns.shutdown().await;
}

// ---- STARTTLS ---------------------------------------------------------------

/// Accepts the simulator's self-signed certificate, as an MTA doing
/// opportunistic STARTTLS does, while still checking handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn starttls_handshake_and_delivery() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    assert_eq!(client.command("STARTTLS").await, "220 2.0.0 Ready to start TLS");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = client.stream.into_inner();
    let tls =
        connector.connect(ServerName::try_from("mx.sim.mailcanary.test").unwrap(), tcp).await.expect("TLS handshake");
    let certificates = tls.get_ref().1.peer_certificates().expect("a server certificate");
    assert_eq!(certificates.len(), 1);

    let mut secure = Client { stream: BufReader::new(tls) };
    let ehlo = secure.command("EHLO mta10.news.example.com").await;
    assert!(!ehlo.contains("STARTTLS"), "STARTTLS is not offered twice: {ehlo}");
    let reply = secure.transaction(SENDER, SEED, &message("control@news.example.com", "tls")).await;
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(secure.command("STARTTLS").await, "503 5.5.1 Error: TLS already active");
    assert_eq!(secure.command("QUIT").await, "221 2.0.0 Bye");

    let copy = std::fs::read_to_string(&sim.delivered_files(SEED, Folder::Inbox)[0]).unwrap();
    assert!(header_value(&copy, "Received").unwrap().contains("with ESMTPS id"), "{copy}");
    assert!(sim.events()[0].tls);
    sim.stop().await;
}

// ---- authentication ---------------------------------------------------------

#[tokio::test]
async fn authenticated_message_passes_spf_dkim_dmarc() {
    let sim = start_sim("").await;
    let mut client = greeted(SPF_IP, &sim).await;
    let reply = client.transaction(SENDER, SEED, &signed_message("signed")).await;
    assert!(reply.starts_with("250 "), "{reply}");

    let files = sim.delivered_files(SEED, Folder::Inbox);
    assert_eq!(files.len(), 1, "delivered to the inbox");
    let copy = std::fs::read_to_string(&files[0]).unwrap();
    let results = header_value(&copy, "Authentication-Results").unwrap();
    assert!(results.contains("spf=pass"), "{results}");
    assert!(results.contains("dkim=pass header.d=news.example.com header.s=rsa2026"), "{results}");
    assert!(results.contains("dmarc=pass header.from=news.example.com"), "{results}");

    let auth = sim.events()[0].auth.clone().expect("verdicts");
    assert_eq!((auth.spf.as_str(), auth.dkim.as_str(), auth.dmarc.as_str()), ("pass", "pass", "pass"));
    sim.stop().await;
}

#[tokio::test]
async fn spoofed_from_is_junked_on_dmarc_fail() {
    let sim = start_sim("").await;
    let mut client = greeted(OTHER_IP, &sim).await;
    let reply = client.transaction(SENDER, SEED, &message("ceo@news.example.com", "spoofed")).await;
    assert!(reply.starts_with("250 "), "{reply}");

    assert!(sim.delivered_files(SEED, Folder::Inbox).is_empty());
    let junk = sim.delivered_files(SEED, Folder::Junk);
    assert_eq!(junk.len(), 1, "delivered to Junk");
    let copy = std::fs::read_to_string(&junk[0]).unwrap();
    let results = header_value(&copy, "Authentication-Results").unwrap();
    assert!(results.contains("spf=fail"), "{results}");
    assert!(results.contains("dmarc=fail"), "{results}");
    assert!(results.contains("policy.dmarc=reject"), "{results}");

    let event = &sim.events()[0];
    assert_eq!(event.folder, Some(Folder::Junk));
    assert_eq!(event.auth.as_ref().unwrap().dmarc, "fail");
    sim.stop().await;
}

#[tokio::test]
async fn dmarc_fail_stays_in_inbox_when_disabled() {
    let sim = start_sim("junk_on_dmarc_fail = false").await;
    let mut client = greeted(OTHER_IP, &sim).await;
    client.transaction(SENDER, SEED, &message("ceo@news.example.com", "spoofed-kept")).await;
    assert_eq!(sim.delivered_files(SEED, Folder::Inbox).len(), 1);
    assert_eq!(sim.events()[0].auth.as_ref().unwrap().dmarc, "fail");
    sim.stop().await;
}

#[tokio::test]
async fn junk_folder_rule_overrides_passing_auth() {
    let sim = start_sim(
        r#"
        [[rule]]
        clients = ["127.0.0.10"]
        action = "accept"
        folder = "junk"
        "#,
    )
    .await;
    let mut client = greeted(SPF_IP, &sim).await;
    client.transaction(SENDER, SEED, &signed_message("junk-rule")).await;
    assert_eq!(sim.delivered_files(SEED, Folder::Junk).len(), 1);
    assert_eq!(sim.events()[0].auth.as_ref().unwrap().dmarc, "pass");
    sim.stop().await;
}

// ---- policy validation ------------------------------------------------------

#[test]
fn invalid_policies_name_key_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"listen = "0.0.0.0:2525""#, "simulator.listen", "not a loopback address"),
        (r#"listen = "localhost:2525""#, "simulator.listen", "write an IP address and a port"),
        (r#"hostname = "mx_1.example.test""#, "simulator.hostname", "invalid hostname"),
        (r#"domains = ["customer a.example.net"]"#, "simulator.domains[0]", "invalid domain"),
        ("domains = []", "simulator.domains", "the list is empty"),
        ("max_message_size = 0", "simulator.max_message_size", "at least 1 byte"),
        (r#"idle_timeout = "5""#, "simulator.idle_timeout", "the unit is missing"),
        ("max_errors = 0", "simulator.max_errors", "at least 1"),
        (r#"default = "junk""#, "simulator.default", "write \"accept\", \"defer\", \"reject\" or \"drop\""),
        (
            "[[rule]]\nclients = [\"203.0.113.0/33\"]\naction = \"defer\"",
            "simulator.rule[0].clients[0]",
            "invalid IP address or CIDR range",
        ),
        ("[[rule]]\nclients = []\naction = \"defer\"", "simulator.rule[0].clients", "matches no client"),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"bounce\"",
            "simulator.rule[0].action",
            "unknown action \"bounce\"",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nreply = \"proofpont\"",
            "simulator.rule[0].reply",
            "known presets: proofpoint, proofpoint-block,",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"reject\"\nreply = \"proofpoint\"",
            "simulator.rule[0].reply",
            "action \"reject\" needs a 5xx reply, but preset \"proofpoint\" has code 421",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nreply = \"554 5.7.1 go away\"",
            "simulator.rule[0].reply",
            "needs a 4xx reply",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"accept\"\nreply = \"451 later\"",
            "simulator.rule[0].reply",
            "needs a 2xx reply",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nreply = \"421 Deferred {client}\"",
            "simulator.rule[0].reply",
            "unknown placeholder {client}",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nreply = \"421-4.7.0 a\\n550 b\"",
            "simulator.rule[0].reply",
            "every line of a reply carries the same code",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nstage = \"connect\"",
            "simulator.rule[0].stage",
            "unknown stage \"connect\"",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"accept\"\nfolder = \"spam\"",
            "simulator.rule[0].folder",
            "write \"inbox\" or \"junk\"",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"reject\"\nfolder = \"junk\"",
            "simulator.rule[0].folder",
            "does not apply to action \"reject\"",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer-after\"\nwindow = \"1h\"",
            "simulator.rule[0].after",
            "missing",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer-after\"\nafter = 2\nwindow = \"1 hour\"",
            "simulator.rule[0].window",
            "invalid duration",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer-after\"\nafter = 0\nwindow = \"1h\"",
            "simulator.rule[0].after",
            "use action = \"defer\"",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"drop\"\ndrop_after_bytes = 0",
            "simulator.rule[0].drop_after_bytes",
            "at least 1",
        ),
        (
            "[[rule]]\nclients = [\"192.0.2.1\"]\naction = \"accept\"\n[[rule]]\nclients = [\"2001:db8::zz\"]\naction = \"accept\"",
            "simulator.rule[1].clients[0]",
            "invalid IP address",
        ),
    ];

    for (policy, key, fragment) in cases {
        let raw: SimulatorToml = toml::from_str(policy).unwrap_or_else(|error| panic!("{policy}: {error}"));
        let errors = sim::validate(&raw, "simulator", &["customer-a.example.net".to_string()])
            .expect_err(&format!("{policy:?} should be invalid"));
        let found = errors.iter().find(|error| error.key == *key);
        let error = found.unwrap_or_else(|| panic!("{policy:?}: no error on {key}, got {errors:?}"));
        assert!(error.message.contains(fragment), "{policy:?}: {:?} lacks {fragment:?}", error.message);
        if *key != "simulator.domains" {
            assert!(error.span.is_some(), "{policy:?}: error on {key} has no span");
        }
    }
}

#[test]
fn policy_file_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");

    std::fs::write(&path, "[simulator]\ndomains = [\"customer-a.example.net\"]\nlisten_on = \"127.0.0.1:2525\"\n")
        .unwrap();
    let sim::SimError::Policy(diagnostics) = sim::load_policy(&path).unwrap_err() else { panic!("a policy error") };
    let text = diagnostics.to_string();
    assert!(text.contains("policy.toml:3:1"), "{text}");
    assert!(text.contains("listen_on"), "{text}");

    std::fs::write(
        &path,
        "[simulator]\n[[simulator.rule]]\nclients = [\"192.0.2.1\"]\naction = \"defer\"\nreply = \"yahoo\"\n",
    )
    .unwrap();
    let sim::SimError::Policy(diagnostics) = sim::load_policy(&path).unwrap_err() else { panic!("a policy error") };
    let text = diagnostics.to_string();
    assert!(text.contains("simulator.domains: no recipient domains"), "{text}");
    assert!(text.contains("policy.toml:5:9: simulator.rule[0].reply: unknown reply preset \"yahoo\""), "{text}");
}

#[test]
fn policy_file_with_dns_table_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    let zone = demo_zones()[0].display().to_string();
    std::fs::write(
        &path,
        format!(
            "[simulator]\ndomains = [\"customer-a.example.net\"]\nlisten = \"127.0.0.1:2525\"\n\n\
             [[simulator.rule]]\nclients = [\"127.0.0.11\"]\naction = \"defer\"\nreply = \"proofpoint\"\n\n\
             [dns]\nzones = [{zone:?}]\n"
        ),
    )
    .unwrap();
    let (config, dns) = sim::load_policy(&path).expect("valid policy");
    assert_eq!(config.listen, "127.0.0.1:2525".parse().unwrap());
    assert_eq!(config.rules.len(), 1);
    assert_eq!(dns.zones, [PathBuf::from(zone)]);
}
