//! Composition, signing and verification, with DKIM keys published by an
//! in-process DNS server on loopback.

use std::path::Path;

use chrono::{TimeZone, Utc};
use mail_auth::dkim::DkimError;
use mail_auth::{AuthenticatedMessage, DkimResult};
use mail_parser::MessageParser;

use super::*;
use crate::dns::{Dns, DnsSettings};

const PKCS8_RSA: &str = include_str!("../../scenarios/keys/demo-rsa.test-key.pem");
const PKCS1_RSA: &str = include_str!("testdata/demo-rsa-pkcs1.test-key.pem");
const ED25519: &str = include_str!("../../scenarios/keys/demo-ed25519.test-key.pem");

fn context() -> ComposeContext {
    ComposeContext {
        from_name: Some("Délivrabilité Team".to_owned()),
        from_address: "control@news.example.com".to_owned(),
        to: "pp-seed-1@customer-a.example.net".to_owned(),
        run_id: "20260101T000000Z-demo".to_owned(),
        path: "b-10".to_owned(),
        pool: Some("pool-b".to_owned()),
        stream: "control".to_owned(),
        sequence: 3,
        token: TrackingToken::generate(),
        time: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        extra_headers: vec![("X-Virtual-MTA".to_owned(), "pool-c".to_owned())],
    }
}

fn signer(pem: &str, selector: &str) -> DkimSigner {
    DkimSigner {
        domain: "news.example.com".to_owned(),
        selector: selector.to_owned(),
        key: DkimKey::from_pem(pem).unwrap(),
        headers: Vec::new(),
        expiration: None,
    }
}

/// Serves `news.example.com` with the public key of each signer.
async fn key_dns(dir: &Path, signers: &[&DkimSigner]) -> Dns {
    let mut zone = String::from(
        "$ORIGIN news.example.com.\n$TTL 300\n@ IN SOA ns1.news.example.com. h.news.example.com. ( 1 3600 600 86400 60 )\n",
    );
    for signer in signers {
        let record = signer.key.public_key_record();
        let strings: Vec<String> =
            record.as_bytes().chunks(255).map(|chunk| format!("\"{}\"", std::str::from_utf8(chunk).unwrap())).collect();
        zone.push_str(&format!("{}._domainkey IN TXT {}\n", signer.selector, strings.join(" ")));
    }
    let path = dir.join("news.example.com.zone");
    std::fs::write(&path, zone).unwrap();
    Dns::start(&DnsSettings { nameservers: Vec::new(), zones: vec![path] }).await.unwrap()
}

async fn verify(dns: &Dns, message: &[u8]) -> Vec<DkimResult> {
    let parsed = AuthenticatedMessage::parse(message).expect("message parses");
    dns.authenticator().verify_dkim(&parsed).await.iter().map(|output| output.result().clone()).collect()
}

fn control_message() -> Vec<u8> {
    compose_control(&context(), "Control {run_id} via {path}", "Plain control message.\nSecond line.\n").unwrap()
}

#[test]
fn rsa_pkcs1_and_pkcs8_load_the_same_key() {
    let pkcs1 = DkimKey::from_pem(PKCS1_RSA).unwrap();
    let pkcs8 = DkimKey::from_pem(PKCS8_RSA).unwrap();

    assert_eq!(pkcs1.key_type(), KeyType::Rsa);
    assert_eq!(pkcs1.bits(), Some(2048));
    assert_eq!(pkcs1.public_key_record(), pkcs8.public_key_record());
    assert!(pkcs1.public_key_record().starts_with("v=DKIM1; k=rsa; p=MIIB"));
}

#[test]
fn openssl_ed25519_key_loads() {
    let key = DkimKey::from_pem(ED25519).unwrap();

    assert_eq!(key.key_type(), KeyType::Ed25519);
    assert_eq!(key.bits(), None);
    assert_eq!(key.public_key_record(), "v=DKIM1; k=ed25519; p=IAfyTIAdn9RmUhAMRMv9AwwZO0FYlxL8/MpdFlMXpgY=");
}

#[test]
fn key_that_is_not_pem_is_rejected() {
    let error = DkimKey::from_pem("not a key").unwrap_err();
    assert!(matches!(error, KeyError::NoPem { .. }), "{error}");
}

#[test]
fn key_debug_hides_the_private_key() {
    let debug = format!("{:?}", DkimKey::from_pem(PKCS8_RSA).unwrap());
    assert_eq!(debug, "DkimKey { type: Rsa, bits: Some(2048), .. }");
}

#[tokio::test]
async fn rsa_signature_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer(PKCS8_RSA, "rsa2026");
    let dns = key_dns(dir.path(), &[&rsa]).await;

    let signed = sign(&control_message(), &[rsa], Utc::now()).unwrap();
    assert_eq!(verify(&dns, &signed).await, [DkimResult::Pass]);
}

#[tokio::test]
async fn ed25519_signature_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ed25519 = signer(ED25519, "ed2026");
    let dns = key_dns(dir.path(), &[&ed25519]).await;

    let signed = sign(&control_message(), &[ed25519], Utc::now()).unwrap();
    assert_eq!(verify(&dns, &signed).await, [DkimResult::Pass]);
}

#[tokio::test]
async fn two_signers_add_two_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer(PKCS8_RSA, "rsa2026");
    let ed25519 = signer(ED25519, "ed2026");
    let dns = key_dns(dir.path(), &[&rsa, &ed25519]).await;

    let signed = sign(&control_message(), &[rsa, ed25519], Utc::now()).unwrap();
    assert_eq!(verify(&dns, &signed).await, [DkimResult::Pass, DkimResult::Pass]);
}

#[tokio::test]
async fn tampered_body_fails_body_hash() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer(PKCS8_RSA, "rsa2026");
    let dns = key_dns(dir.path(), &[&rsa]).await;

    let signed = sign(&control_message(), &[rsa], Utc::now()).unwrap();
    let text = String::from_utf8(signed).unwrap();
    let tampered = text.replace("Second line.", "Second line, altered.");
    assert_ne!(text, tampered);

    let results = verify(&dns, tampered.as_bytes()).await;
    let body_hash_failed = matches!(
        &results[..],
        [DkimResult::Fail(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch))
            | DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch))]
    );
    assert!(body_hash_failed, "{results:?}");
}

#[test]
fn signature_lists_present_default_headers() {
    let signed = sign(&control_message(), &[signer(ED25519, "ed2026")], Utc::now()).unwrap();
    let parsed = MessageParser::default().parse(&signed[..]).unwrap();
    let header = parsed.header_raw("DKIM-Signature").unwrap();
    let unfolded: String = header.split_whitespace().collect();

    assert!(unfolded.contains("c=relaxed/relaxed"), "{unfolded}");
    let signed_headers = unfolded.split(';').find_map(|tag| tag.strip_prefix("h=")).unwrap().to_ascii_lowercase();
    for name in ["from", "to", "subject", "date", "message-id", "mime-version", "content-type", "x-mailcanary-token"] {
        assert!(signed_headers.split(':').any(|signed| signed == name), "{name} not in h={signed_headers}");
    }
    assert!(!signed_headers.contains("list-id"), "absent header signed: {signed_headers}");
}

#[test]
fn control_message_has_every_header() {
    let ctx = context();
    let message =
        compose_control(&ctx, "Control {run_id} via {path} — {pool}", "Body for {seed}, #{sequence}.\n").unwrap();
    let parsed = MessageParser::default().parse(&message[..]).unwrap();

    let from = parsed.from().and_then(|from| from.first()).unwrap();
    assert_eq!(from.name(), Some("Délivrabilité Team"));
    assert_eq!(from.address(), Some("control@news.example.com"));
    assert_eq!(parsed.to().and_then(|to| to.first()).and_then(|to| to.address()), Some(ctx.to.as_str()));
    assert_eq!(parsed.subject(), Some("Control 20260101T000000Z-demo via b-10 — pool-b"));
    assert_eq!(parsed.date().map(|date| date.to_timestamp()), Some(ctx.time.timestamp()));
    assert_eq!(parsed.message_id(), Some(ctx.token.message_id("news.example.com").as_str()));
    assert!(parsed.header_raw("MIME-Version").is_some());
    assert_eq!(parsed.header_raw(TOKEN_HEADER).map(str::trim), Some(ctx.token.as_str()));
    assert_eq!(parsed.header_raw("X-Virtual-MTA").map(str::trim), Some("pool-c"));
    assert_eq!(parsed.body_text(0).as_deref(), Some("Body for pp-seed-1@customer-a.example.net, #3.\r\n"));
}

#[test]
fn control_headers_are_ascii_on_the_wire() {
    let message = control_message();
    let end = message.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
    assert!(message[..end].is_ascii(), "non-ASCII header bytes");
}

#[test]
fn control_rejects_unknown_placeholder() {
    let error = compose_control(&context(), "Control {rnu_id}", "body").unwrap_err();
    assert!(error.to_string().contains("{rnu_id}"), "{error}");
}

const TEMPLATE: &[u8] = b"Return-Path: <old@news.example.com>\r\n\
Received: from a by b;\r\n\tMon, 1 Dec 2025 00:00:00 +0000\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=news.example.com; s=old;\r\n\th=from:to; bh=abc=;\r\n\tb=def=\r\n\
From: Newsletter <news@news.example.com>\r\n\
To: someone@example.org\r\n\
Subject: Issue {sequence} for\r\n {seed}\r\n\
ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=xyz\r\n\
Date: Mon, 1 Dec 2025 00:00:00 +0000\r\n\
Message-ID: <old@news.example.com>\r\n\
List-Unsubscribe: <https://news.example.com/u/1>\r\n\
dkim-signature: v=1; a=ed25519-sha256; d=news.example.com; s=old2;\r\n b=ghi\r\n\
X-Mailcanary-Token: mcaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>Hello =E2=80=94 {seed}</p>\r\n\
DKIM-Signature: this line is body text\r\n\
\r\n";

fn body_of(message: &[u8]) -> &[u8] {
    let end = message.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
    &message[end + 4..]
}

fn header_of(message: &[u8]) -> String {
    let end = message.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
    String::from_utf8(message[..end + 2].to_vec()).unwrap()
}

#[test]
fn bulk_removes_every_folded_signature() {
    let bulk = compose_bulk(&context(), TEMPLATE).unwrap();
    let header = header_of(&bulk).to_ascii_lowercase();

    for removed in ["dkim-signature", "arc-seal", "received", "return-path", "bh=abc", "b=ghi", "\tmon, 1 dec"] {
        assert!(!header.contains(removed), "{removed} left in:\n{header}");
    }
}

#[test]
fn bulk_keeps_body_byte_for_byte() {
    let bulk = compose_bulk(&context(), TEMPLATE).unwrap();
    assert_eq!(body_of(&bulk), body_of(TEMPLATE));
}

#[test]
fn bulk_replaces_per_copy_headers() {
    let ctx = context();
    let bulk = compose_bulk(&ctx, TEMPLATE).unwrap();
    let parsed = MessageParser::default().parse(&bulk[..]).unwrap();

    assert_eq!(parsed.to().and_then(|to| to.first()).and_then(|to| to.address()), Some(ctx.to.as_str()));
    assert_eq!(parsed.message_id(), Some(ctx.token.message_id("news.example.com").as_str()));
    assert_eq!(parsed.date().map(|date| date.to_timestamp()), Some(ctx.time.timestamp()));
    assert_eq!(parsed.subject(), Some("Issue 3 for pp-seed-1@customer-a.example.net"));
    assert_eq!(parsed.header_raw(TOKEN_HEADER).map(str::trim), Some(ctx.token.as_str()));
    assert_eq!(parsed.header_raw("X-Virtual-MTA").map(str::trim), Some("pool-c"));
    assert_eq!(parsed.header_values("X-Mailcanary-Token").count(), 1);
    assert!(header_of(&bulk).contains("List-Unsubscribe: <https://news.example.com/u/1>\r\n"));
}

#[test]
fn bulk_normalises_bare_line_feeds() {
    let template = b"From: a@news.example.com\nSubject: s\n\nline one\nline two\n";
    let bulk = compose_bulk(&context(), template).unwrap();

    assert_eq!(body_of(&bulk), b"line one\r\nline two\r\n");
    assert!(!bulk.windows(2).any(|pair| pair[1] == b'\n' && pair[0] != b'\r'));
}

#[test]
fn bulk_template_without_separator_is_rejected() {
    let error = compose_bulk(&context(), b"From: a@news.example.com\r\nSubject: s\r\n").unwrap_err();
    assert!(error.to_string().contains("no empty line"), "{error}");
}

#[test]
fn bulk_template_without_from_is_rejected() {
    let error = compose_bulk(&context(), b"Subject: s\r\n\r\nbody\r\n").unwrap_err();
    assert!(error.to_string().contains("no From header"), "{error}");
}

#[tokio::test]
async fn signed_bulk_copy_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer(PKCS8_RSA, "rsa2026");
    let dns = key_dns(dir.path(), &[&rsa]).await;

    let bulk = compose_bulk(&context(), TEMPLATE).unwrap();
    let signed = sign(&bulk, &[rsa], Utc::now()).unwrap();
    assert_eq!(verify(&dns, &signed).await, [DkimResult::Pass]);
}
