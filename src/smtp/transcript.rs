//! The text transcript of an attempt, in the style of swaks: one line per
//! event with its UTC time, and a marker for the direction.
//!
//! | marker | meaning |
//! |---|---|
//! | `<-` | server to client |
//! | ` ->` | client to server |
//! | `<~`, ` ~>` | the same, inside TLS |
//! | `***` | connection events, TLS details, failures and the outcome |
//!
//! The message content is not repeated; its size is shown instead.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::record::{Exchange, Outcome, Step, Transaction};

/// The text that replaces a secret in a recorded command.
pub const MASK: &str = "[masked]";

/// SMTP commands whose arguments carry no secret. A line sent by the client
/// that starts with none of these, and is not AUTH, is taken as a SASL
/// response (RFC 4954 section 4) and masked whole.
const PLAIN_COMMANDS: [&str; 16] = [
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "VRFY", "EXPN", "HELP", "NOOP", "QUIT", "STARTTLS", "ETRN",
    "ATRN", "TURN",
];

/// Renders a transaction as a transcript under `heading`.
pub fn render(transaction: &Transaction, heading: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "=== {heading}");
    let local = transaction.local.map_or_else(|| "unknown".to_owned(), |local| local.to_string());
    let _ = writeln!(out, "=== server {} ({}), local address {local}", transaction.server, transaction.mx_host);

    let mut in_tls = false;
    for exchange in &transaction.exchanges {
        render_exchange(&mut out, transaction, exchange, &mut in_tls);
    }

    if let Some(failure) = &transaction.failure {
        event(&mut out, transaction.finished_at, &format!("failed: {failure}"));
    }
    event(&mut out, transaction.finished_at, &outcome_line(transaction));
    out
}

fn render_exchange(out: &mut String, transaction: &Transaction, exchange: &Exchange, in_tls: &mut bool) {
    match exchange.step {
        Step::Connect => {
            let target = format!("connecting to {} ({})", transaction.server, transaction.mx_host);
            event(out, exchange.sent_at, &target);
            if let Some(connected_at) = exchange.replied_at {
                let local =
                    transaction.local.map_or_else(|| "an unknown local address".to_owned(), |local| local.to_string());
                event(out, connected_at, &format!("connected from {local}"));
            }
            return;
        }
        Step::TlsHandshake => {
            event(out, exchange.sent_at, "starting TLS handshake");
            if let (Some(done_at), Some(tls)) = (exchange.replied_at, &transaction.tls) {
                let verified = if tls.verified { "certificate verified" } else { "certificate not verified" };
                event(out, done_at, &format!("TLS established: {}, {}, {verified}", tls.version, tls.cipher));
                let subject = tls.peer_subject.as_deref().unwrap_or("unknown");
                let issuer = tls.peer_issuer.as_deref().unwrap_or("unknown");
                event(out, done_at, &format!("peer certificate subject {subject}, issuer {issuer}"));
                *in_tls = true;
            }
            return;
        }
        _ => {}
    }

    let (sent, received) = if *in_tls { (" ~>", "<~ ") } else { (" ->", "<- ") };
    if exchange.step == Step::EndOfData {
        let size = exchange.size.unwrap_or(0);
        line(out, exchange.sent_at, sent, &format!("<message content, {size} bytes>"));
    }
    if let Some(command) = &exchange.command {
        line(out, exchange.sent_at, sent, command);
    }
    if let (Some(reply), Some(replied_at)) = (&exchange.reply, exchange.replied_at) {
        for reply_line in &reply.lines {
            line(out, replied_at, received, reply_line);
        }
    }
}

fn outcome_line(transaction: &Transaction) -> String {
    let outcome = match transaction.outcome {
        Outcome::Accepted => "accepted",
        Outcome::Deferred => "deferred",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    };
    let decisive = transaction
        .decisive
        .and_then(|index| transaction.exchanges.get(index))
        .and_then(|exchange| Some((exchange.step, exchange.reply.as_ref()?)));

    match decisive {
        Some((step, reply)) => {
            let code = reply.code.map_or_else(|| "without code".to_owned(), |code| code.to_string());
            format!("outcome: {outcome}, decided by the {code} reply at the {step} step")
        }
        None => format!("outcome: {outcome}"),
    }
}

fn event(out: &mut String, at: DateTime<Utc>, text: &str) {
    line(out, at, "***", text);
}

fn line(out: &mut String, at: DateTime<Utc>, marker: &str, text: &str) {
    let _ = writeln!(out, "{} {marker} {text}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
}

/// Masks the secrets a client command line can carry: the initial response
/// of `AUTH <mechanism> <response>` (PLAIN, LOGIN, XOAUTH2 and any other
/// mechanism), and the whole of a line that is no known command, which is a
/// SASL response such as an AUTH LOGIN user name or password. The SASL cancel
/// line `*` is kept.
pub fn mask_command(line: &str) -> String {
    let verb = line.split(' ').next().unwrap_or_default();

    if verb.eq_ignore_ascii_case("AUTH") {
        let mut words = line.splitn(3, ' ');
        let auth = words.next().unwrap_or_default();
        return match (words.next(), words.next()) {
            (Some(mechanism), Some(_)) => format!("{auth} {mechanism} {MASK}"),
            (Some(mechanism), None) => format!("{auth} {mechanism}"),
            (None, _) => auth.to_owned(),
        };
    }

    let is_plain = line == "." || line == "*" || PLAIN_COMMANDS.iter().any(|known| verb.eq_ignore_ascii_case(known));
    if is_plain { line.to_owned() } else { MASK.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::record::{Failure, Reply, TlsInfo};

    #[test]
    fn mask_auth_plain_response() {
        assert_eq!(mask_command("AUTH PLAIN AHVzZXIAc2VjcmV0"), "AUTH PLAIN [masked]");
    }

    #[test]
    fn mask_auth_lower_case() {
        assert_eq!(mask_command("auth plain AHVzZXIAc2VjcmV0"), "auth plain [masked]");
    }

    #[test]
    fn mask_auth_login_user_name() {
        assert_eq!(mask_command("AUTH LOGIN dXNlcg=="), "AUTH LOGIN [masked]");
    }

    #[test]
    fn mask_auth_login_continuation() {
        assert_eq!(mask_command("c2VjcmV0"), MASK);
    }

    #[test]
    fn mask_xoauth2_token() {
        assert_eq!(
            mask_command("AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDQAAQ=="),
            "AUTH XOAUTH2 [masked]"
        );
    }

    #[test]
    fn mask_keeps_mechanism_without_response() {
        assert_eq!(mask_command("AUTH LOGIN"), "AUTH LOGIN");
    }

    #[test]
    fn mask_keeps_sasl_cancel() {
        assert_eq!(mask_command("*"), "*");
    }

    #[test]
    fn mask_keeps_plain_commands() {
        for command in [
            "EHLO mta10.example.com",
            "MAIL FROM:<bounces@news.example.com> BODY=8BITMIME",
            "RCPT TO:<seed@customer-a.example>",
            "DATA",
            ".",
            "STARTTLS",
            "QUIT",
        ] {
            assert_eq!(mask_command(command), command, "command {command:?}");
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_780_000_000_000 + ms).unwrap()
    }

    fn exchange(step: Step, command: Option<&str>, lines: &[&str], ms: i64) -> Exchange {
        let reply = (!lines.is_empty())
            .then(|| Reply::parse_lines(&lines.iter().map(|line| (*line).to_owned()).collect::<Vec<_>>()).unwrap());
        Exchange {
            step,
            command: command.map(ToOwned::to_owned),
            sent_at: at(ms),
            replied_at: reply.as_ref().map(|_| at(ms + 5)),
            reply,
            size: None,
        }
    }

    fn transaction() -> Transaction {
        let mut connect = exchange(Step::Connect, None, &[], 0);
        connect.replied_at = Some(at(1));
        let mut handshake = exchange(Step::TlsHandshake, None, &[], 40);
        handshake.replied_at = Some(at(45));
        let mut end = exchange(Step::EndOfData, Some("."), &["250 2.0.0 queued as 4F1"], 80);
        end.size = Some(1234);

        Transaction {
            mx_host: "mx.example.com".to_owned(),
            server: "192.0.2.1:25".parse().unwrap(),
            local: Some("203.0.113.10:40000".parse().unwrap()),
            started_at: at(0),
            finished_at: at(100),
            exchanges: vec![
                connect,
                exchange(Step::Greeting, None, &["220 mx.example.com ESMTP"], 2),
                exchange(Step::Ehlo, Some("EHLO mta10.example.com"), &["250-mx.example.com", "250 STARTTLS"], 10),
                exchange(Step::Starttls, Some("STARTTLS"), &["220 go ahead"], 20),
                handshake,
                exchange(Step::Ehlo, Some("EHLO mta10.example.com"), &["250 mx.example.com"], 50),
                exchange(Step::Mail, Some("MAIL FROM:<b@example.com>"), &["250 ok"], 60),
                exchange(Step::Rcpt, Some("RCPT TO:<s@example.org>"), &["250 ok"], 65),
                exchange(Step::Data, Some("DATA"), &["354 go on"], 70),
                end,
                exchange(Step::Quit, Some("QUIT"), &["221 bye"], 90),
            ],
            tls: Some(TlsInfo {
                version: "TLSv1.3".to_owned(),
                cipher: "TLS13_AES_256_GCM_SHA384".to_owned(),
                peer_subject: Some("CN=mx.example.com".to_owned()),
                peer_issuer: Some("CN=Example CA".to_owned()),
                verified: false,
            }),
            outcome: Outcome::Accepted,
            failure: None,
            decisive: Some(9),
        }
    }

    #[test]
    fn render_accepted_with_tls() {
        let text = render(&transaction(), "control via b-10");
        let expected = "\
=== control via b-10
=== server 192.0.2.1:25 (mx.example.com), local address 203.0.113.10:40000
2026-05-28T20:26:40.000Z *** connecting to 192.0.2.1:25 (mx.example.com)
2026-05-28T20:26:40.001Z *** connected from 203.0.113.10:40000
2026-05-28T20:26:40.007Z <-  220 mx.example.com ESMTP
2026-05-28T20:26:40.010Z  -> EHLO mta10.example.com
2026-05-28T20:26:40.015Z <-  250-mx.example.com
2026-05-28T20:26:40.015Z <-  250 STARTTLS
2026-05-28T20:26:40.020Z  -> STARTTLS
2026-05-28T20:26:40.025Z <-  220 go ahead
2026-05-28T20:26:40.040Z *** starting TLS handshake
2026-05-28T20:26:40.045Z *** TLS established: TLSv1.3, TLS13_AES_256_GCM_SHA384, certificate not verified
2026-05-28T20:26:40.045Z *** peer certificate subject CN=mx.example.com, issuer CN=Example CA
2026-05-28T20:26:40.050Z  ~> EHLO mta10.example.com
2026-05-28T20:26:40.055Z <~  250 mx.example.com
2026-05-28T20:26:40.060Z  ~> MAIL FROM:<b@example.com>
2026-05-28T20:26:40.065Z <~  250 ok
2026-05-28T20:26:40.065Z  ~> RCPT TO:<s@example.org>
2026-05-28T20:26:40.070Z <~  250 ok
2026-05-28T20:26:40.070Z  ~> DATA
2026-05-28T20:26:40.075Z <~  354 go on
2026-05-28T20:26:40.080Z  ~> <message content, 1234 bytes>
2026-05-28T20:26:40.080Z  ~> .
2026-05-28T20:26:40.085Z <~  250 2.0.0 queued as 4F1
2026-05-28T20:26:40.090Z  ~> QUIT
2026-05-28T20:26:40.095Z <~  221 bye
2026-05-28T20:26:40.100Z *** outcome: accepted, decided by the 250 reply at the end-of-data step
";
        assert_eq!(text, expected);
    }

    #[test]
    fn render_failure_line() {
        let mut transaction = transaction();
        transaction.exchanges.truncate(2);
        transaction.tls = None;
        transaction.outcome = Outcome::Failed;
        transaction.decisive = None;
        transaction.failure = Some(Failure::TimedOut { step: Step::Ehlo, after_ms: 300 });

        let text = render(&transaction, "h");
        assert!(
            text.ends_with(
                "2026-05-28T20:26:40.100Z *** failed: timed out after 300 ms at the ehlo step\n\
                 2026-05-28T20:26:40.100Z *** outcome: failed\n"
            ),
            "{text}"
        );
    }
}
