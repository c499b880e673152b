//! Micro-benchmarks of the per-message work that does not touch the network:
//! reading SMTP replies, parsing Authentication-Results, classifying a reply,
//! and DKIM signing with the demo keys.
//!
//! Run with `cargo bench --bench parsing`; docs/benchmarks.md records the
//! figures and the machine they were measured on.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mailcanary::auth::results::parse_authentication_results;
use mailcanary::classify::{ReplyContext, classify};
use mailcanary::message::{DkimKey, DkimSigner, sign};
use mailcanary::smtp::record::{Reply, Step};

const PROOFPOINT_DEFERRAL: &str = "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=203.0.113.10";

/// Gmail's multi-line rate-limit reply, as it arrives after the final dot.
const GMAIL_RATE_LINES: [&str; 4] = [
    "421-4.7.28 [203.0.113.10      15] Our system has detected an unusual rate of",
    "421-4.7.28 unsolicited mail originating from your IP address. To protect our",
    "421-4.7.28 users from spam, mail sent from your IP address has been temporarily",
    "421 4.7.28 rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError x1si123.25 - gsmtp",
];

const MICROSOFT_S3150: &str = "550 5.7.1 Unfortunately, messages from [203.0.113.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.";

/// An Authentication-Results value as a Microsoft 365 gateway writes it.
const AUTHENTICATION_RESULTS: &str = "spf=pass (sender IP is 203.0.113.10)\r\n smtp.mailfrom=news.example.com; dkim=pass (signature was verified)\r\n header.d=news.example.com;dmarc=pass action=none\r\n header.from=news.example.com;compauth=pass reason=100";

const MESSAGE: &[u8] = b"From: Deliverability Control <control@news.example.com>\r\n\
To: pp-seed-1@customer-a.example.net\r\n\
Subject: Control 20261204T120000Z via b-10\r\n\
Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n\
Message-ID: <k3j4h5g6f7d8s9a0.mailcanary@news.example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
X-Mailcanary-Token: k3j4h5g6f7d8s9a0\r\n\
\r\n\
Control message 1 of run 20261204T120000Z.\r\n\
Path b-10 in pool-b, to pp-seed-1@customer-a.example.net, sent 2026-12-04T12:00:00Z.\r\n";

fn replies(c: &mut Criterion) {
    let gmail_lines: Vec<String> = GMAIL_RATE_LINES.iter().map(|line| (*line).to_string()).collect();
    let gmail_text = GMAIL_RATE_LINES.join("\r\n");

    c.bench_function("reply/parse_text proofpoint one line", |b| {
        b.iter(|| Reply::parse_text(black_box(PROOFPOINT_DEFERRAL)))
    });
    c.bench_function("reply/parse_text gmail four lines", |b| b.iter(|| Reply::parse_text(black_box(&gmail_text))));
    c.bench_function("reply/parse_lines gmail four lines", |b| b.iter(|| Reply::parse_lines(black_box(&gmail_lines))));
}

fn authentication_results(c: &mut Criterion) {
    c.bench_function("auth/parse_authentication_results microsoft", |b| {
        b.iter(|| parse_authentication_results(black_box(AUTHENTICATION_RESULTS)))
    });
}

fn classification(c: &mut Criterion) {
    let context = ReplyContext {
        mx_host: Some("mx1.customer-a.example.net".to_string()),
        stage: Some(Step::Rcpt),
        source_ip: Some("203.0.113.10".parse().expect("valid IP")),
    };
    let cases = [
        ("proofpoint", Reply::parse_text(PROOFPOINT_DEFERRAL)),
        ("gmail", Reply::parse_text(&GMAIL_RATE_LINES.join("\r\n"))),
        ("microsoft", Reply::parse_text(MICROSOFT_S3150)),
    ];

    // The builtin rules are compiled on first use; do it outside the timing.
    let _ = classify(&cases[0].1, &context);
    for (name, reply) in &cases {
        c.bench_function(&format!("classify/{name}"), |b| b.iter(|| classify(black_box(reply), &context)));
    }
}

fn signing(c: &mut Criterion) {
    let signer = |selector: &str, file: &str| {
        let path = format!("{}/scenarios/keys/{file}", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        DkimSigner {
            domain: "news.example.com".to_string(),
            selector: selector.to_string(),
            key: DkimKey::from_pem(&pem).unwrap_or_else(|error| panic!("invalid key {path}: {error}")),
            headers: Vec::new(),
            expiration: None,
        }
    };
    let rsa = [signer("rsa2026", "demo-rsa.test-key.pem")];
    let ed25519 = [signer("ed2026", "demo-ed25519.test-key.pem")];
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).single().expect("valid time");

    c.bench_function("dkim/sign rsa-2048", |b| b.iter(|| sign(black_box(MESSAGE), &rsa, now)));
    c.bench_function("dkim/sign ed25519", |b| b.iter(|| sign(black_box(MESSAGE), &ed25519, now)));
}

criterion_group!(benches, replies, authentication_results, classification, signing);
criterion_main!(benches);
