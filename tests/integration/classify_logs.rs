//! MTA log lines against the fields expected in `tests/fixtures/mta-logs.toml`.
//!
//! Every field of the parsed line is compared: an expected key that is left
//! out means the line has no such value, so a parser that invents one fails.

use mailcanary::classify::{Rules, explain, parse_log_line};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    line: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    format: String,
    raw: String,
    expect: toml::Table,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mta-logs.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    let fixture: Fixture = toml::from_str(&text).unwrap_or_else(|error| panic!("invalid {path}: {error}"));
    fixture.line
}

#[test]
fn every_log_line_parses_to_expected_fields() {
    let cases = cases();
    let mut wrong = Vec::new();
    for case in &cases {
        let Some(line) = parse_log_line(&case.raw) else {
            wrong.push(format!("{}: not recognized as a log line", case.id));
            continue;
        };
        let actual = serde_json::to_value(&line).expect("a log line serializes");
        let actual = actual.as_object().expect("a log line is an object");

        let mut problems = Vec::new();
        if actual["format"] != serde_json::Value::String(case.format.clone()) {
            problems.push(format!("format: expected {}, got {}", case.format, actual["format"]));
        }
        for key in case.expect.keys() {
            if !actual.contains_key(key) {
                problems.push(format!("{key}: expected in the fixture, but LogLine has no such field"));
            }
        }
        for (key, value) in actual {
            if key == "format" {
                continue;
            }
            let expected = match case.expect.get(key) {
                Some(expected) => serde_json::to_value(expected).expect("a TOML value converts to JSON"),
                None if key == "internal" => serde_json::Value::Bool(false),
                None => serde_json::Value::Null,
            };
            if *value != expected {
                problems.push(format!("{key}: expected {expected}, got {value}"));
            }
        }
        if !problems.is_empty() {
            wrong.push(format!("{}:\n    {}", case.id, problems.join("\n    ")));
        }
    }
    println!("mta-logs.toml: {} of {} lines fully right", cases.len() - wrong.len(), cases.len());
    assert!(wrong.is_empty(), "wrong log lines:\n{}", wrong.join("\n"));
}

#[test]
fn explain_reads_a_postfix_status_line() {
    let raw = "to=<user@free.fr>, relay=mx2.free.fr[198.51.100.58]:25, delay=275667, delays=275667/0.09/0.13/0, dsn=4.0.0, status=deferred (host mx2.free.fr[198.51.100.58] refused to talk to me: 421 Refused. Your reverse DNS entry does not resolve to an IP.)";
    let (unwrapped, classification) = explain(raw, None, Rules::builtin());
    assert_eq!(unwrapped.reply.code, Some(421));
    assert_eq!(unwrapped.mx_host.as_deref(), Some("mx2.free.fr"));
    assert_eq!(unwrapped.relay_ip, Some("198.51.100.58".parse().unwrap()));
    assert_eq!(classification.reason.as_str(), "dns");
}

#[test]
fn explain_reads_a_postfix_said_line() {
    let raw = "postfix/smtp[1266]: E583AAA03CC: host mta5.am0.yahoodns.net[198.51.100.110] said: 421 4.7.0 [TSS04] Messages from 198.51.100.80 temporarily deferred due to user complaints - 4.16.55.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html (in reply to MAIL FROM command)";
    let (unwrapped, classification) = explain(raw, None, Rules::builtin());
    assert_eq!(unwrapped.stage.map(|stage| stage.to_string()).as_deref(), Some("mail"));
    assert_eq!(classification.provider.as_str(), "yahoo");
    assert_eq!(classification.reason.as_str(), "ip-reputation");
    assert_eq!(classification.ip, Some("198.51.100.80".parse().unwrap()));
}

#[test]
fn explain_keeps_kumomta_code_for_internal_reply() {
    let raw = r#"{"type": "TransientFailure", "response": {"code": 400, "content": "KumoMTA internal: error in deliver_message: IO error: …"}}"#;
    let (unwrapped, classification) = explain(raw, None, Rules::builtin());
    assert_eq!(unwrapped.reply.code, Some(400));
    assert_eq!(classification.outcome.map(|outcome| format!("{outcome:?}")).as_deref(), Some("Deferred"));
}

#[test]
fn unknown_text_is_not_a_log_line() {
    assert!(parse_log_line("421 4.7.0 Try again later").is_none());
    assert!(parse_log_line("").is_none());
    assert!(parse_log_line("{not json at all").is_none());
}
