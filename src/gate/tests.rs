//! The checkpoint rules on synthetic runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};

use super::*;
use crate::run::record::*;
use crate::verify::{CopyVerdicts, MethodVerdict, OwnVerdicts, ReceiverVerdicts};

/// One synthetic message: role, path, seed, final outcome, and for an
/// accepted one its placement and whether the receiver's DKIM passed.
struct Message {
    role: Role,
    path: &'static str,
    seed: &'static str,
    outcome: Outcome,
    placement: Option<Placement>,
    receiver_dkim: &'static str,
}

fn control(path: &'static str, seed: &'static str, outcome: Outcome) -> Message {
    let placement = (outcome == Outcome::Accepted).then_some(Placement::Inbox);
    Message { role: Role::Control, path, seed, outcome, placement, receiver_dkim: "pass" }
}

fn bulk(path: &'static str, seed: &'static str, outcome: Outcome) -> Message {
    Message { role: Role::Bulk, ..control(path, seed, outcome) }
}

fn method(name: &str, result: &str) -> MethodVerdict {
    MethodVerdict { method: name.into(), result: result.into(), domain: None, selector: None, detail: None }
}

fn verdicts(receiver_dkim: &str) -> CopyVerdicts {
    let header = crate::auth::results::parse_authentication_results(&format!(
        "mx.example.net; spf=pass smtp.mailfrom=example.com; dkim={receiver_dkim} header.d=example.com; dmarc=pass header.from=example.com"
    ))
    .unwrap();
    CopyVerdicts {
        receiver: Some(ReceiverVerdicts {
            header_index: 0,
            other_headers: Vec::new(),
            methods: vec![method("spf", "pass"), method("dkim", receiver_dkim), method("dmarc", "pass")],
            header,
        }),
        own: Some(OwnVerdicts {
            dkim: vec![method("dkim", "pass")],
            spf: method("spf", "pass"),
            dmarc: method("dmarc", "pass"),
            arc: None,
        }),
        gateway_hop: None,
        proofpoint: None,
        disagreements: Vec::new(),
    }
}

fn attempt_reply(text: &str) -> Option<crate::smtp::record::Reply> {
    (!text.is_empty()).then(|| crate::smtp::record::Reply::parse_text(text))
}

fn record(messages: &[Message], providers: &[(&str, &str)]) -> RunRecord {
    let time = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
    let mut paths: Vec<PathInfo> = Vec::new();
    let mut message_records = Vec::new();
    let mut attempts = Vec::new();
    let mut copies = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let sequence = index as u32 + 1;
        if !paths.iter().any(|path| path.name == message.path) {
            paths.push(PathInfo {
                name: message.path.into(),
                pool: "pool-b".into(),
                source_ip: Some(format!("192.0.2.{}", paths.len() + 10).parse().unwrap()),
                helo: "mta.example.com".into(),
                relay: None,
                headers: Vec::new(),
            });
        }
        let reply = match message.outcome {
            Outcome::Accepted => "250 2.0.0 Ok",
            Outcome::Deferred => "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=192.0.2.10",
            Outcome::Rejected => "554 5.7.1 Blocked",
            Outcome::Failed => "",
        };
        attempts.push(AttemptRecord {
            number: sequence,
            sequence,
            try_number: 1,
            stream: message.role.as_str().into(),
            role: message.role,
            path: message.path.into(),
            pool: "pool-b".into(),
            source_ip: None,
            helo: "mta.example.com".into(),
            seed: message.seed.into(),
            started_at: time,
            finished_at: time,
            outcome: message.outcome,
            reply: attempt_reply(reply),
            failure: None,
            classification: attempt_reply(reply).map(|reply| crate::classify::classify(&reply, &Default::default())),
            ip_mismatch: None,
            negative_replies: Vec::new(),
            transactions: Vec::new(),
            transcript: PathBuf::new(),
        });
        if let Some(placement) = message.placement {
            copies.push(CopyRecord {
                sequence,
                token: format!("token{sequence}"),
                mailbox: "seeds".into(),
                folder: "INBOX".into(),
                placement,
                location: String::new(),
                saved_as: PathBuf::new(),
                found_at: time,
                size: 100,
                verdicts: Some(verdicts(message.receiver_dkim)),
            });
        }
        message_records.push(MessageRecord {
            sequence,
            stream: message.role.as_str().into(),
            role: message.role,
            path: message.path.into(),
            pool: "pool-b".into(),
            seed: message.seed.into(),
            token: Some(format!("token{sequence}")),
            message_id: None,
            size: Some(100),
            signatures: Vec::new(),
            attempts: vec![sequence],
            outcome: Some(message.outcome),
            cleared_after_retry: false,
            placement: message.placement,
            missing_reason: None,
            error: None,
        });
    }
    RunRecord {
        format: FORMAT_VERSION,
        tool: "mailcanary test".into(),
        run_id: "test".into(),
        scenario: ScenarioInfo {
            name: "test".into(),
            file: PathBuf::from("test.toml"),
            description: None,
            max_messages: 100,
        },
        started_at: time,
        finished_at: time,
        interrupted: false,
        sender: SenderInfo { from: "a@example.com".into(), mail_from: "a@example.com".into() },
        paths,
        seeds: Vec::new(),
        dkim: Vec::new(),
        delivery: DeliveryInfo {
            starttls: "opportunistic".into(),
            rate_per_minute: None,
            retry_seconds: Vec::new(),
            routes: Vec::new(),
        },
        dns: DnsInfo { zones: Vec::new(), nameservers: Vec::new(), local_server: None },
        simulator: None,
        plan: Vec::new(),
        totals: Totals::from_messages(&message_records),
        messages: message_records,
        attempts,
        seed_providers: providers
            .iter()
            .map(|(domain, provider)| (domain.to_string(), provider.to_string()))
            .collect::<BTreeMap<_, _>>(),
        preflight: None,
        copies,
        collection_errors: BTreeMap::new(),
        verdict: None,
        context: ContextInfo {
            remediation: Vec::new(),
            current_rate_limit: None,
            contact: None,
            ticket: None,
            notes: Vec::new(),
        },
    }
}

const PROOFPOINT: &[(&str, &str)] = &[("pp.example.net", "proofpoint"), ("ms.example.net", "microsoft")];

fn failed_criteria(verdict: &Verdict) -> Vec<&str> {
    verdict.criteria.iter().filter(|criterion| !criterion.passed).map(|criterion| criterion.name.as_str()).collect()
}

#[test]
fn all_accepted_is_healthy() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-10", "s2@pp.example.net", Outcome::Accepted),
            bulk("b-10", "s1@pp.example.net", Outcome::Accepted),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Healthy, "failed: {:?}", failed_criteria(&verdict));
    assert_eq!(verdict.checkpoint.exit_status().code(), 0);
}

#[test]
fn part_of_pool_deferred_is_warning() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-10", "s2@pp.example.net", Outcome::Accepted),
            control("b-11", "s1@pp.example.net", Outcome::Deferred),
            control("b-11", "s2@pp.example.net", Outcome::Deferred),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Warning);
    assert_eq!(failed_criteria(&verdict), vec!["control accepted"]);
    assert!(
        verdict.diagnosis.iter().any(
            |line| line.contains("only part of the range or pool is refused") && line.contains("b-11 (192.0.2.11)")
        ),
        "{:?}",
        verdict.diagnosis
    );
    assert!(
        verdict.diagnosis.iter().any(|line| line
            .starts_with("ip-reputation on b-11 (192.0.2.11) (lookup: https://ipcheck.proofpoint.com/?ip=192.0.2.10)")),
        "{:?}",
        verdict.diagnosis
    );
}

#[test]
fn control_deferred_across_seeds_is_critical() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Deferred),
            control("b-10", "s2@pp.example.net", Outcome::Deferred),
            control("b-11", "s1@pp.example.net", Outcome::Deferred),
            control("b-11", "s2@pp.example.net", Outcome::Deferred),
            control("b-10", "s3@ms.example.net", Outcome::Accepted),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Critical);
    assert_eq!(verdict.checkpoint.exit_status().code(), 4);
    assert!(
        verdict
            .diagnosis
            .iter()
            .any(|line| line.contains("control deferred too") && line.contains("proofpoint (2 of 2 seeds")),
        "{:?}",
        verdict.diagnosis
    );
    assert!(verdict.diagnosis.iter().any(|line| line.contains("IP or range reputation")), "{:?}", verdict.diagnosis);
    assert!(
        verdict.diagnosis.iter().any(|line| line.starts_with("only proofpoint refuses")),
        "{:?}",
        verdict.diagnosis
    );
}

#[test]
fn one_seed_deferred_is_not_critical() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Deferred),
            control("b-10", "s2@pp.example.net", Outcome::Accepted),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Warning, "one of two seeds is below critical_min_seeds = 2");
}

#[test]
fn control_passing_while_bulk_defers_is_warning() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-10", "s2@pp.example.net", Outcome::Accepted),
            bulk("b-10", "s1@pp.example.net", Outcome::Deferred),
            bulk("b-10", "s2@pp.example.net", Outcome::Deferred),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Warning);
    assert_eq!(failed_criteria(&verdict), vec!["bulk accepted"]);
    assert!(
        verdict.diagnosis.iter().any(|line| line.starts_with("control accepted, bulk deferred on the same IP (b-10)")
            && line.contains("not DNS")),
        "{:?}",
        verdict.diagnosis
    );
}

#[test]
fn dkim_failing_at_receiver_only_is_critical() {
    let mut failing = control("b-10", "s2@pp.example.net", Outcome::Accepted);
    failing.receiver_dkim = "fail";
    let run = record(&[control("b-10", "s1@pp.example.net", Outcome::Accepted), failing], PROOFPOINT);
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Critical);
    assert_eq!(failed_criteria(&verdict), vec!["control dkim passes at the receiver"]);
    assert!(
        verdict.diagnosis.iter().any(|line| line.starts_with("control mail fails dkim at the receiver")),
        "{:?}",
        verdict.diagnosis
    );
}

#[test]
fn control_in_spam_is_warning() {
    let mut junked = control("b-10", "s1@pp.example.net", Outcome::Accepted);
    junked.placement = Some(Placement::Spam);
    let run = record(&[junked, control("b-10", "s2@pp.example.net", Outcome::Accepted)], PROOFPOINT);
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Warning);
    assert_eq!(failed_criteria(&verdict), vec!["control in the inbox"]);

    let relaxed = Gate { require_inbox: false, ..Gate::default() };
    assert_eq!(evaluate(&run, &relaxed).checkpoint, Checkpoint::Healthy, "require_inbox = false ignores placement");
}

#[test]
fn deferral_rate_threshold_allows_some() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-10", "s2@pp.example.net", Outcome::Accepted),
            control("b-10", "s3@pp.example.net", Outcome::Accepted),
            control("b-11", "s4@pp.example.net", Outcome::Deferred),
        ],
        PROOFPOINT,
    );
    let strict = evaluate(&run, &Gate::default());
    assert_eq!(strict.checkpoint, Checkpoint::Warning);
    let tolerant = Gate { max_control_deferral_rate: 0.25, ..Gate::default() };
    assert_eq!(evaluate(&run, &tolerant).checkpoint, Checkpoint::Healthy);
}

#[test]
fn relaying_denied_is_not_reputation() {
    let mut run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-11", "s2@pp.example.net", Outcome::Rejected),
        ],
        PROOFPOINT,
    );
    let reply = crate::smtp::record::Reply::parse_text("550 5.7.1 <s2@pp.example.net>: Relay access denied");
    run.attempts[1].classification = Some(crate::classify::classify(&reply, &Default::default()));
    run.attempts[1].reply = Some(reply);
    let verdict = evaluate(&run, &Gate::default());
    assert_eq!(verdict.checkpoint, Checkpoint::Warning);
    assert!(!verdict.diagnosis.iter().any(|line| line.contains("ip-reputation")), "{:?}", verdict.diagnosis);
}

#[test]
fn interrupted_run_is_incomplete() {
    let mut run = record(&[control("b-10", "s1@pp.example.net", Outcome::Accepted)], PROOFPOINT);
    run.interrupted = true;
    run.messages.push(MessageRecord {
        sequence: 2,
        outcome: None,
        attempts: Vec::new(),
        placement: None,
        ..run.messages[0].clone()
    });
    let verdict = evaluate(&run, &Gate::default());
    assert!(!verdict.complete);
    assert_eq!(verdict.exit_status().code(), 1);
    assert!(verdict.incomplete.iter().any(|reason| reason.contains("interrupted")), "{:?}", verdict.incomplete);
    assert!(
        verdict.incomplete.iter().any(|reason| reason.contains("message 2 was never sent")),
        "{:?}",
        verdict.incomplete
    );
}

#[test]
fn healthy_sentence_only_when_true() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-11", "s2@pp.example.net", Outcome::Deferred),
        ],
        PROOFPOINT,
    );
    let tolerant = Gate { max_control_deferral_rate: 0.5, ..Gate::default() };
    let verdict = evaluate(&run, &tolerant);
    assert_eq!(verdict.checkpoint, Checkpoint::Healthy);
    assert!(verdict.diagnosis[0].starts_with("healthy within this gate's thresholds"), "{:?}", verdict.diagnosis);
}

#[test]
fn tallies_count_per_provider_and_path() {
    let run = record(
        &[
            control("b-10", "s1@pp.example.net", Outcome::Accepted),
            control("b-11", "s1@pp.example.net", Outcome::Deferred),
            control("b-10", "s3@ms.example.net", Outcome::Rejected),
        ],
        PROOFPOINT,
    );
    let verdict = evaluate(&run, &Gate::default());
    let proofpoint = &verdict.tallies.by_provider["proofpoint"];
    assert_eq!(proofpoint.messages, 2);
    assert_eq!(proofpoint.accepted, 1);
    assert_eq!(proofpoint.deferred, 1);
    assert_eq!(verdict.tallies.by_provider["microsoft"].rejected, 1);
    assert_eq!(verdict.tallies.by_path["b-10"].messages, 2);
    assert_eq!(verdict.tallies.by_role_and_path["control b-11"].deferred, 1);
}
