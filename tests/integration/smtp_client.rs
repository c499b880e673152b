//! The SMTP client against scripted servers on 127.0.0.1, each started by
//! its test on port 0: every step, negative replies, dropped connections,
//! timeouts, STARTTLS and source IP binding.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailcanary::smtp::record::{Failure, Outcome, Step, Transaction};
use mailcanary::smtp::{AttemptRequest, StartTls, Timeouts, TlsPolicy, attempt, transcript};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One action of a scripted server.
enum Act {
    /// Sends reply lines, given with `\n` between them, each ended with CRLF.
    Send(&'static str),
    /// Reads one line and checks that it starts with this text.
    Expect(&'static str),
    /// Reads message content up to the line `.`.
    ReadData,
    /// Reads one line of message content and closes the connection.
    DropInData,
    Sleep(u64),
    /// Closes the connection.
    Close,
    /// Runs the server side of the TLS handshake.
    StartTls,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a scripted server saw.
#[derive(Debug, Default)]
struct ServerLog {
    peer: Option<SocketAddr>,
    /// Every command line received, without CRLF.
    lines: Vec<String>,
    /// Message content received, as sent on the wire.
    data: Vec<u8>,
}

struct Server {
    address: SocketAddr,
    log: tokio::task::JoinHandle<ServerLog>,
}

async fn server(script: Vec<Act>) -> Server {
    server_with_tls(script, None).await
}

async fn server_with_tls(script: Vec<Act>, acceptor: Option<TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let log = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let mut log = ServerLog { peer: Some(peer), ..ServerLog::default() };
        let stream: Box<dyn Io> = Box::new(stream);
        run_script(BufReader::new(stream), script, acceptor, &mut log).await;
        log
    });
    Server { address, log }
}

async fn run_script(
    mut reader: BufReader<Box<dyn Io>>,
    script: Vec<Act>,
    acceptor: Option<TlsAcceptor>,
    log: &mut ServerLog,
) {
    for act in script {
        match act {
            Act::Send(text) => {
                let wire = text.replace('\n', "\r\n") + "\r\n";
                reader.get_mut().write_all(wire.as_bytes()).await.unwrap();
            }
            Act::Expect(prefix) => {
                let line = read_line(&mut reader).await.unwrap().expect("client closed the connection");
                assert!(line.starts_with(prefix), "server expected {prefix:?}, read {line:?}");
                log.lines.push(line);
            }
            Act::ReadData => loop {
                let mut raw = Vec::new();
                reader.read_until(b'\n', &mut raw).await.unwrap();
                assert!(!raw.is_empty(), "client closed the connection inside the data");
                if raw == b".\r\n" {
                    break;
                }
                log.data.extend_from_slice(&raw);
            },
            Act::DropInData => {
                let mut raw = Vec::new();
                reader.read_until(b'\n', &mut raw).await.unwrap();
                log.data.extend_from_slice(&raw);
                return;
            }
            Act::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Act::Close => return,
            Act::StartTls => {
                let acceptor = acceptor.clone().expect("script needs a TLS acceptor");
                let tls = acceptor.accept(reader.into_inner()).await.unwrap();
                let stream: Box<dyn Io> = Box::new(tls);
                reader = BufReader::new(stream);
            }
        }
    }

    // Records whatever the client sends after the script, until it closes.
    while let Ok(Some(line)) =
        tokio::time::timeout(Duration::from_secs(5), read_line(&mut reader)).await.unwrap_or(Ok(None))
    {
        log.lines.push(line);
    }
}

async fn read_line(reader: &mut BufReader<Box<dyn Io>>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

const MESSAGE: &[u8] = b"From: control@news.example.com\nTo: seed@customer-a.example\nSubject: control\n\n.leading dot\nGr\xc3\xbc\xc3\x9fe\n";

fn request(server: SocketAddr) -> AttemptRequest {
    AttemptRequest {
        server,
        mx_host: "mx.test".to_owned(),
        source_ip: None,
        helo: "mta10.example.com".to_owned(),
        starttls: StartTls::Opportunistic,
        tls: TlsPolicy::default(),
        mail_from: "bounces@news.example.com".to_owned(),
        rcpt_to: "seed@customer-a.example".to_owned(),
        message: Arc::from(MESSAGE),
        timeouts: Timeouts::all(Duration::from_secs(5)),
    }
}

fn steps(transaction: &Transaction) -> Vec<Step> {
    transaction.exchanges.iter().map(|exchange| exchange.step).collect()
}

const EHLO_PLAIN: &str = "250-mx.test greets mta10.example.com\n250-PIPELINING\n250-8BITMIME\n250 SIZE 10240000";

fn happy_script() -> Vec<Act> {
    vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO mta10.example.com"),
        Act::Send(EHLO_PLAIN),
        Act::Expect("MAIL FROM:<bounces@news.example.com>"),
        Act::Send("250 2.1.0 Ok"),
        Act::Expect("RCPT TO:<seed@customer-a.example>"),
        Act::Send("250 2.1.5 Ok"),
        Act::Expect("DATA"),
        Act::Send("354 End data with <CR><LF>.<CR><LF>"),
        Act::ReadData,
        Act::Send("250 2.0.0 Ok: queued as 4F1A2B3C"),
        Act::Expect("QUIT"),
        Act::Send("221 2.0.0 Bye"),
        Act::Close,
    ]
}

#[tokio::test]
async fn happy_path_accepted() {
    let server = server(happy_script()).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Accepted);
    assert_eq!(transaction.failure, None);
    assert_eq!(
        steps(&transaction),
        [Step::Connect, Step::Greeting, Step::Ehlo, Step::Mail, Step::Rcpt, Step::Data, Step::EndOfData, Step::Quit]
    );
    assert_eq!(transaction.decisive, Some(6));

    let end = &transaction.exchanges[6];
    let reply = end.reply.as_ref().unwrap();
    assert_eq!(reply.lines, ["250 2.0.0 Ok: queued as 4F1A2B3C"]);
    assert_eq!(reply.enhanced.as_deref(), Some("2.0.0"));
    assert_eq!(end.size, Some(log.data.len() as u64));

    let ehlo = transaction.exchanges[2].reply.as_ref().unwrap();
    assert_eq!(ehlo.lines.len(), 4);
    assert_eq!(ehlo.lines[3], "250 SIZE 10240000");

    for exchange in &transaction.exchanges[1..] {
        assert!(exchange.reply.is_some(), "step {:?} has no reply", exchange.step);
        let replied_at = exchange.replied_at.expect("reply time");
        assert!(replied_at >= exchange.sent_at, "step {:?}", exchange.step);
        assert_eq!(exchange.sent_at.timestamp_subsec_nanos() % 1_000_000, 0);
    }
    assert!(transaction.started_at <= transaction.finished_at);
    assert_eq!(transaction.tls, None);
    assert_eq!(transaction.local.map(|local| local.ip()), log.peer.map(|peer| peer.ip()));
}

#[tokio::test]
async fn happy_path_wire_content() {
    let server = server(happy_script()).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    let expected_data = b"From: control@news.example.com\r\nTo: seed@customer-a.example\r\nSubject: control\r\n\r\n..leading dot\r\nGr\xc3\xbc\xc3\x9fe\r\n";
    assert_eq!(log.data, expected_data);
    assert_eq!(
        log.lines[1],
        format!("MAIL FROM:<bounces@news.example.com> BODY=8BITMIME SIZE={}", expected_data.len())
    );
    assert_eq!(log.lines.last().map(String::as_str), Some("QUIT"));
    assert_eq!(transaction.exchanges[3].command.as_deref(), Some(log.lines[1].as_str()));

    let text = transcript::render(&transaction, "control via loopback");
    assert!(text.starts_with("=== control via loopback\n"), "{text}");
    assert!(text.contains(" -> EHLO mta10.example.com\n"), "{text}");
    assert!(text.contains(" <-  250-PIPELINING\n"), "{text}");
    assert!(text.contains(&format!(" -> <message content, {} bytes>\n", expected_data.len())), "{text}");
    assert!(text.contains("*** outcome: accepted"), "{text}");
}

#[tokio::test]
async fn greeting_421_deferred_without_quit() {
    let server = server(vec![Act::Send("421 4.7.0 mx.test try again later")]).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Deferred);
    assert_eq!(transaction.failure, None);
    assert_eq!(transaction.decisive, Some(1));
    assert_eq!(steps(&transaction), [Step::Connect, Step::Greeting]);
    assert!(log.lines.is_empty(), "client sent {:?}", log.lines);
}

#[tokio::test]
async fn greeting_554_rejected_then_quit() {
    let script = vec![
        Act::Send("554 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=198.51.100.24"),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Rejected);
    assert_eq!(transaction.decisive, Some(1));
    assert_eq!(steps(&transaction), [Step::Connect, Step::Greeting, Step::Quit]);
    let greeting = transaction.exchanges[1].reply.as_ref().unwrap();
    assert_eq!(greeting.enhanced.as_deref(), Some("5.7.0"));
    assert_eq!(log.lines, ["QUIT"]);
}

#[tokio::test]
async fn rcpt_multi_line_deferral_keeps_enhanced_code() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_PLAIN),
        Act::Expect("MAIL FROM:"),
        Act::Send("250 2.1.0 Ok"),
        Act::Expect("RCPT TO:"),
        Act::Send(
            "451-4.7.650 The mail server [192.0.2.25] has been temporarily rate limited\n451 4.7.650 due to IP reputation. (S3113)",
        ),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Deferred);
    assert_eq!(transaction.failure, None);
    let decisive = transaction.decisive.expect("decisive reply");
    assert_eq!(transaction.exchanges[decisive].step, Step::Rcpt);
    let reply = transaction.exchanges[decisive].reply.as_ref().unwrap();
    assert_eq!(reply.code, Some(451));
    assert_eq!(reply.enhanced.as_deref(), Some("4.7.650"));
    assert_eq!(
        reply.lines,
        [
            "451-4.7.650 The mail server [192.0.2.25] has been temporarily rate limited",
            "451 4.7.650 due to IP reputation. (S3113)"
        ]
    );
    assert_eq!(log.lines.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn drop_during_data_is_failed() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_PLAIN),
        Act::Expect("MAIL FROM:"),
        Act::Send("250 Ok"),
        Act::Expect("RCPT TO:"),
        Act::Send("250 Ok"),
        Act::Expect("DATA"),
        Act::Send("354 go ahead"),
        Act::DropInData,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;
    server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Failed);
    assert_eq!(transaction.failure, Some(Failure::ConnectionDropped { step: Step::EndOfData }));
    assert_eq!(transaction.decisive, None);
    assert_eq!(steps(&transaction).last(), Some(&Step::EndOfData));
}

#[tokio::test]
async fn slow_reply_times_out_at_step() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_PLAIN),
        Act::Expect("MAIL FROM:"),
        Act::Sleep(1500),
        Act::Send("250 Ok"),
    ];
    let server = server(script).await;
    let mut request = request(server.address);
    request.timeouts = Timeouts::all(Duration::from_millis(300));
    let transaction = attempt(&request).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    assert_eq!(transaction.failure, Some(Failure::TimedOut { step: Step::Mail, after_ms: 300 }));
    let mail = transaction.exchanges.last().unwrap();
    assert_eq!(mail.step, Step::Mail);
    assert_eq!(mail.reply, None);
    drop(server.log);
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_PLAIN),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ];
    let server = server(script).await;
    let mut request = request(server.address);
    request.starttls = StartTls::Required;
    let transaction = attempt(&request).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Failed);
    assert_eq!(transaction.failure, Some(Failure::StarttlsNotOffered));
    assert_eq!(steps(&transaction), [Step::Connect, Step::Greeting, Step::Ehlo, Step::Quit]);
    assert_eq!(log.lines, ["EHLO mta10.example.com", "QUIT"]);
}

#[tokio::test]
async fn ehlo_refused_falls_back_to_helo() {
    let script = vec![
        Act::Send("220 mx.test SMTP"),
        Act::Expect("EHLO"),
        Act::Send("502 5.5.2 Error: command not recognized"),
        Act::Expect("HELO mta10.example.com"),
        Act::Send("250 mx.test"),
        Act::Expect("MAIL FROM:<bounces@news.example.com>"),
        Act::Send("250 Ok"),
        Act::Expect("RCPT TO:"),
        Act::Send("250 Ok"),
        Act::Expect("DATA"),
        Act::Send("354 go ahead"),
        Act::ReadData,
        Act::Send("250 queued"),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Accepted);
    assert_eq!(steps(&transaction)[2..4], [Step::Ehlo, Step::Helo]);
    // Without EHLO there are no extensions, so MAIL carries no parameters.
    assert_eq!(log.lines[2], "MAIL FROM:<bounces@news.example.com>");
}

#[tokio::test]
async fn garbage_greeting_is_protocol_error() {
    let server = server(vec![Act::Send("HELLO\u{1}"), Act::Close]).await;
    let transaction = attempt(&request(server.address)).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    match &transaction.failure {
        Some(Failure::Protocol { step, detail }) => {
            assert_eq!(*step, Step::Greeting);
            assert!(detail.contains("HELLO\\u{1}"), "{detail}");
        }
        other => panic!("expected a protocol failure, got {other:?}"),
    }
    drop(server.log);
}

#[tokio::test]
async fn connection_refused_is_failed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);

    let transaction = attempt(&request(address)).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    assert!(matches!(transaction.failure, Some(Failure::ConnectionRefused { .. })), "{:?}", transaction.failure);
    assert_eq!(steps(&transaction), [Step::Connect]);
    assert_eq!(transaction.exchanges[0].replied_at, None);
}

#[tokio::test]
async fn source_ip_bound() {
    let server = server(vec![Act::Send("421 4.3.2 busy")]).await;
    let source_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut request = request(server.address);
    request.source_ip = Some(source_ip);
    let transaction = attempt(&request).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Deferred);
    assert_eq!(log.peer.map(|peer| peer.ip()), Some(source_ip));
    assert_eq!(transaction.local.map(|local| local.ip()), Some(source_ip));
}

#[tokio::test]
async fn source_ip_not_on_host() {
    // Binding an address this host does not have fails locally, before
    // anything is sent.
    let source_ip: IpAddr = "192.0.2.1".parse().unwrap();
    let mut request = request("127.0.0.1:9".parse().unwrap());
    request.source_ip = Some(source_ip);
    let transaction = attempt(&request).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    match &transaction.failure {
        Some(Failure::Bind { source_ip: named, detail }) => {
            assert_eq!(*named, source_ip);
            assert!(detail.contains("Configure the address"), "{detail}");
        }
        other => panic!("expected a bind failure, got {other:?}"),
    }
}

#[tokio::test]
async fn source_ip_family_mismatch() {
    let source_ip: IpAddr = "::1".parse().unwrap();
    let mut request = request("127.0.0.1:9".parse().unwrap());
    request.source_ip = Some(source_ip);
    let transaction = attempt(&request).await;

    assert!(matches!(transaction.failure, Some(Failure::Bind { .. })), "{:?}", transaction.failure);
}

/// A CA and a certificate for `mx.test` signed by it.
struct TestPki {
    ca: CertificateDer<'static>,
    acceptor: TlsAcceptor,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailcanary test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["mx.test".to_owned()]).unwrap();
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "mx.test");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();

    TestPki { ca: ca.der().clone(), acceptor: TlsAcceptor::from(Arc::new(config)) }
}

const EHLO_TLS: &str = "250-mx.test\n250-STARTTLS\n250 8BITMIME";

fn tls_script() -> Vec<Act> {
    vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_TLS),
        Act::Expect("STARTTLS"),
        Act::Send("220 2.0.0 Ready to start TLS"),
        Act::StartTls,
        Act::Expect("EHLO mta10.example.com"),
        Act::Send("250-mx.test\n250 8BITMIME"),
        Act::Expect("MAIL FROM:"),
        Act::Send("250 Ok"),
        Act::Expect("RCPT TO:"),
        Act::Send("250 Ok"),
        Act::Expect("DATA"),
        Act::Send("354 go ahead"),
        Act::ReadData,
        Act::Send("250 2.0.0 queued"),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ]
}

#[tokio::test]
async fn starttls_handshake_records_tls() {
    let pki = test_pki();
    let server = server_with_tls(tls_script(), Some(pki.acceptor)).await;
    let transaction = attempt(&request(server.address)).await;
    let log = server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Accepted, "{:?}", transaction.failure);
    assert_eq!(
        steps(&transaction)[..6],
        [Step::Connect, Step::Greeting, Step::Ehlo, Step::Starttls, Step::TlsHandshake, Step::Ehlo]
    );
    let tls = transaction.tls.as_ref().expect("TLS details");
    assert_eq!(tls.version, "TLSv1.3");
    assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
    assert_eq!(tls.peer_subject.as_deref(), Some("CN=mx.test"));
    assert_eq!(tls.peer_issuer.as_deref(), Some("CN=mailcanary test CA"));
    assert!(!tls.verified, "the test CA is not trusted by default");
    assert_eq!(log.lines.last().map(String::as_str), Some("QUIT"));

    let text = transcript::render(&transaction, "tls");
    assert!(text.contains(" ~> MAIL FROM:"), "{text}");
    assert!(text.contains(" <~  250 2.0.0 queued"), "{text}");
    assert!(text.contains(" -> STARTTLS\n"), "{text}");
}

#[tokio::test]
async fn starttls_verified_with_extra_ca() {
    let pki = test_pki();
    let server = server_with_tls(tls_script(), Some(pki.acceptor)).await;
    let mut request = request(server.address);
    request.starttls = StartTls::Required;
    request.tls = TlsPolicy { verify: true, extra_roots: vec![pki.ca], server_name: None };
    let transaction = attempt(&request).await;
    server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Accepted, "{:?}", transaction.failure);
    assert!(transaction.tls.as_ref().expect("TLS details").verified);
}

#[tokio::test]
async fn starttls_unverified_certificate_rejected() {
    let pki = test_pki();
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_TLS),
        Act::Expect("STARTTLS"),
        Act::Send("220 2.0.0 Ready to start TLS"),
    ];
    let server = server_with_tls(script, Some(pki.acceptor.clone())).await;
    let mut request = request(server.address);
    request.tls.verify = true;
    let transaction = attempt(&request).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    match &transaction.failure {
        Some(Failure::Tls { detail }) => assert!(detail.contains("mx.test"), "{detail}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert_eq!(transaction.tls, None);
    assert_eq!(steps(&transaction).last(), Some(&Step::TlsHandshake));
    drop(server.log);
}

#[tokio::test]
async fn starttls_refused_goes_on_in_clear() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_TLS),
        Act::Expect("STARTTLS"),
        Act::Send("454 4.7.0 TLS not available due to local problem"),
        Act::Expect("MAIL FROM:"),
        Act::Send("250 Ok"),
        Act::Expect("RCPT TO:"),
        Act::Send("250 Ok"),
        Act::Expect("DATA"),
        Act::Send("354 go ahead"),
        Act::ReadData,
        Act::Send("250 queued"),
        Act::Expect("QUIT"),
        Act::Send("221 Bye"),
        Act::Close,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;
    server.log.await.unwrap();

    assert_eq!(transaction.outcome, Outcome::Accepted);
    assert_eq!(transaction.tls, None);
}

#[tokio::test]
async fn data_after_starttls_reply_is_protocol_error() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send(EHLO_TLS),
        Act::Expect("STARTTLS"),
        Act::Send("220 Ready\n250 injected"),
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;

    assert_eq!(transaction.outcome, Outcome::Failed);
    match &transaction.failure {
        Some(Failure::Protocol { step, detail }) => {
            assert_eq!(*step, Step::Starttls);
            assert!(detail.contains("250 injected"), "{detail}");
        }
        other => panic!("expected a protocol failure, got {other:?}"),
    }
    drop(server.log);
}

#[tokio::test]
async fn reply_cut_mid_line_is_protocol_error() {
    let script = vec![
        Act::Send("220 mx.test ESMTP"),
        Act::Expect("EHLO"),
        Act::Send("250-mx.test\n250-PIPE"),
        Act::Sleep(50),
        Act::Close,
    ];
    let server = server(script).await;
    let transaction = attempt(&request(server.address)).await;

    match &transaction.failure {
        Some(Failure::Protocol { step, detail }) => {
            assert_eq!(*step, Step::Ehlo);
            assert!(detail.contains("truncated"), "{detail}");
        }
        other => panic!("expected a protocol failure, got {other:?}"),
    }
    drop(server.log);
}
