//! Unit tests for the rules loader, unwrapping, the classifier's glue and
//! `ip_mismatch`.

use std::io::Write as _;
use std::net::IpAddr;

use super::*;
use crate::smtp::record::Step;

fn write_rules(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temporary file");
    file.write_all(text.as_bytes()).expect("write rules");
    file
}

fn load_error(text: &str) -> String {
    let file = write_rules(text);
    let error = load_user_rules(file.path()).expect_err("the rules file is invalid");
    error.to_string()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn classified(text: &str, mx: Option<&str>) -> Classification {
    let context = ReplyContext { mx_host: mx.map(str::to_owned), ..ReplyContext::default() };
    classify(&Reply::parse_text(text), &context)
}

#[test]
fn builtin_rules_load() {
    assert_eq!(classified("421 4.7.0 [TSS04] Messages deferred", None).rule, "yahoo-tss");
}

#[test]
fn loader_reports_unknown_key_with_position() {
    let message = load_error("[[reason]]\nid = \"mine\"\nreason = \"policy\"\ncontain = [\"x\"]\n");
    assert!(message.contains(":4:1"), "{message}");
    assert!(message.contains("contain"), "{message}");
}

#[test]
fn loader_reports_invalid_regex_at_its_string() {
    let message = load_error("[[reason]]\nid = \"mine\"\nreason = \"policy\"\nregex = ['(unclosed']\n");
    assert!(message.contains(":4:10"), "{message}");
    assert!(message.contains("reason[0].regex"), "{message}");
    assert!(message.contains("invalid regex"), "{message}");
}

#[test]
fn loader_reports_unknown_reason() {
    let message = load_error("[[reason]]\nid = \"mine\"\nreason = \"spam\"\ncontains = [\"x\"]\n");
    assert!(message.contains(":3:"), "{message}");
    assert!(message.contains("spam"), "{message}");
}

#[test]
fn loader_reports_bad_enhanced_pattern() {
    let message = load_error("[[reason]]\nid = \"mine\"\nreason = \"policy\"\nenhanced = [\"5.7\"]\n");
    assert!(message.contains(":4:13"), "{message}");
    assert!(message.contains("invalid enhanced code pattern"), "{message}");
}

#[test]
fn loader_rejects_rule_without_conditions() {
    let message = load_error("[[reason]]\nid = \"everything\"\nreason = \"policy\"\n");
    assert!(message.contains(":2:6"), "{message}");
    assert!(message.contains("no condition"), "{message}");
}

#[test]
fn loader_rejects_duplicate_ids() {
    let text = "[[reason]]\nid = \"twice\"\nreason = \"policy\"\ncode = [\"550\"]\n\n[[reason]]\nid = \"twice\"\nreason = \"content\"\ncode = [\"554\"]\n";
    let message = load_error(text);
    assert!(message.contains(":7:6"), "{message}");
    assert!(message.contains("duplicate rule id"), "{message}");
}

#[test]
fn loader_rejects_provider_rule_mixing_mx_and_text() {
    let text =
        "[[provider]]\nid = \"mixed\"\nprovider = \"google\"\nmx_suffix = [\"example.com\"]\ncontains = [\"x\"]\n";
    assert!(load_error(text).contains("not both"));
}

#[test]
fn loader_reports_missing_file() {
    let error = load_user_rules(std::path::Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert!(error.to_string().contains("cannot read the file"), "{error}");
}

#[test]
fn user_rules_are_tried_first() {
    let text = "[[reason]]\nid = \"tss-is-rate\"\nreason = \"rate-limit\"\nregex = ['\\[TSS04\\]']\nadvice = [\"Slow down toward Yahoo.\"]\n";
    let file = write_rules(text);
    let rules = load_user_rules(file.path()).expect("valid rules");
    let reply = Reply::parse_text("421 4.7.0 [TSS04] Messages from 198.51.100.80 temporarily deferred");
    let classification = rules.classify(&reply, &ReplyContext::default());
    assert_eq!(classification.reason, Reason::RateLimit);
    assert_eq!(classification.rule, "tss-is-rate");
    assert_eq!(classification.provider, Provider::Yahoo);
    assert_eq!(classification.advice.first().map(String::as_str), Some("Slow down toward Yahoo."));
}

#[test]
fn user_advice_replaces_builtin_advice() {
    let file = write_rules("[advice.greylist]\nsteps = [\"Wait ten minutes.\"]\n");
    let rules = load_user_rules(file.path()).expect("valid rules");
    let reply = Reply::parse_text("450 4.2.0 Greylisted, see http://postgrey.example/");
    let classification = rules.classify(&reply, &ReplyContext::default());
    assert_eq!(classification.advice, vec!["Wait ten minutes.".to_owned()]);
}

#[test]
fn ip_mismatch_names_both_addresses() {
    let classification =
        classified("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=198.51.100.7", None);
    let sentence = ip_mismatch(&classification, ip("203.0.113.10")).expect("a mismatch");
    assert!(sentence.contains("198.51.100.7"), "{sentence}");
    assert!(sentence.contains("bound to 203.0.113.10"), "{sentence}");
    assert!(sentence.contains("NAT"), "{sentence}");
}

#[test]
fn ip_mismatch_silent_when_addresses_agree() {
    let classification =
        classified("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=203.0.113.10", None);
    assert_eq!(ip_mismatch(&classification, ip("203.0.113.10")), None);
}

#[test]
fn ip_mismatch_reads_mapped_ipv6_as_ipv4() {
    let classification = classified("554 IP address 203.0.113.10 rejected [IP reputation fail]", None);
    assert_eq!(ip_mismatch(&classification, ip("::ffff:203.0.113.10")), None);
}

#[test]
fn ip_mismatch_silent_when_reply_names_no_ip() {
    let classification = classified("421 4.7.0 [IPTS04] Messages from a.b.c.d temporarily deferred", None);
    assert_eq!(ip_mismatch(&classification, ip("203.0.113.10")), None);
}

#[test]
fn mismatch_leads_the_advice_when_source_ip_known() {
    let reply = Reply::parse_text("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=198.51.100.7");
    let context = ReplyContext { source_ip: Some(ip("203.0.113.10")), ..ReplyContext::default() };
    let classification = classify(&reply, &context);
    assert!(classification.advice[0].contains("bound to 203.0.113.10"), "{:?}", classification.advice);
}

#[test]
fn advice_uses_lookup_url_when_present() {
    let classification =
        classified("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=198.51.100.7", None);
    assert!(
        classification.advice.iter().any(|step| step.contains("https://ipcheck.proofpoint.com/?ip=198.51.100.7")),
        "{:?}",
        classification.advice
    );
}

#[test]
fn advice_without_url_names_provider() {
    let classification =
        classified("451 4.7.500 Server busy. Please try again later from [x.xx.xx.x]. (AS77712344)", None);
    assert!(
        classification.advice.iter().any(|step| step.contains("Microsoft's sender support")),
        "{:?}",
        classification.advice
    );
}

#[test]
fn wording_wins_over_mx() {
    let classification = classified(
        "554 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=198.51.100.24",
        Some("mx01.mail.icloud.com"),
    );
    assert_eq!(classification.provider, Provider::Proofpoint);
}

#[test]
fn mx_suffix_matches_whole_labels() {
    assert_eq!(classified("550 5.7.1 nope", Some("mx.notgoogle.com")).provider, Provider::Other);
    assert_eq!(classified("550 5.7.1 nope", Some("ALT1.ASPMX.L.GOOGLE.COM.")).provider, Provider::Google);
}

#[test]
fn intermediate_reply_has_no_outcome() {
    assert_eq!(classified("354 Start mail input", None).outcome, None);
}

#[test]
fn text_without_any_clue_has_no_outcome() {
    assert_eq!(classified("something happened", None).outcome, None);
}

#[test]
fn unwrap_postfix_said_line() {
    let unwrapped = unwrap_reply(
        "host mx2.mailbox.org[198.51.100.215] said: 450 4.2.0 <user@mailbox.org>: Recipient address rejected: Greylisted (in reply to RCPT TO command)",
    );
    assert_eq!(unwrapped.reply.code, Some(450));
    assert_eq!(unwrapped.stage, Some(Step::Rcpt));
    assert_eq!(unwrapped.mx_host.as_deref(), Some("mx2.mailbox.org"));
    assert_eq!(unwrapped.relay_ip, Some(ip("198.51.100.215")));
    assert!(!unwrapped.reply.text().contains("in reply to"));
}

#[test]
fn unwrap_embedded_reply_keeps_outer_code() {
    let text = "421 4.1.1 <a@example.com>: Recipient address rejected: unverified address: host example.com[x.xx.xx.xx] said: 450 4.1.1 <a@example.com>: lost connection (in reply to RCPT TO command)";
    let unwrapped = unwrap_reply(text);
    assert_eq!(unwrapped.reply.code, Some(421));
    assert_eq!(unwrapped.reply.enhanced.as_deref(), Some("4.1.1"));
    assert_eq!(unwrapped.stage, None);
    assert!(unwrapped.reply.text().ends_with("(in reply to RCPT TO command)"));
}

#[test]
fn unwrap_embedded_reply_inside_postfix_wrapper() {
    let text = "host gw.example.net[198.51.100.9] said: 421 4.1.1 unverified address: host example.com[x] said: 450 4.1.1 lost connection (in reply to RCPT TO command) (in reply to RCPT TO command)";
    let unwrapped = unwrap_reply(text);
    assert_eq!(unwrapped.reply.code, Some(421));
    assert_eq!(unwrapped.stage, Some(Step::Rcpt));
    assert!(unwrapped.reply.text().ends_with("lost connection (in reply to RCPT TO command)"));
}

#[test]
fn unwrap_splits_joined_multiline_reply() {
    let unwrapped = unwrap_reply("421-4.7.28 first part 421-x.x.xx second part 421 x.x.xx last part");
    assert_eq!(unwrapped.reply.lines.len(), 3);
    assert_eq!(unwrapped.reply.text(), "first part second part last part");
}

#[test]
fn unwrap_library_error_drops_filler_enhanced_code() {
    let unwrapped =
        unwrap_reply("host 'mx.example.net' rejected command 'RCPT TO' with code 550 (0.0.0) 'no such user'");
    assert_eq!(unwrapped.reply.code, Some(550));
    assert_eq!(unwrapped.reply.enhanced, None);
    assert_eq!(unwrapped.stage, Some(Step::Rcpt));
}

#[test]
fn unwrap_library_error_keeps_real_enhanced_code() {
    let unwrapped = unwrap_reply("host 'mx.example.net' rejected command 'DATA' with code 554 (5.7.1) 'spam'");
    assert_eq!(unwrapped.reply.enhanced.as_deref(), Some("5.7.1"));
    assert_eq!(unwrapped.stage, Some(Step::Data));
}

#[test]
fn unwrap_exim_with_recipient_in_command() {
    let unwrapped = unwrap_reply(
        "H=mx.example.net [198.51.100.3]: SMTP error from remote mail server after RCPT TO:<a@example.net>: 550 5.1.1 unknown user",
    );
    assert_eq!(unwrapped.reply.code, Some(550));
    assert_eq!(unwrapped.stage, Some(Step::Rcpt));
    assert_eq!(unwrapped.mx_host.as_deref(), Some("mx.example.net"));
}

#[test]
fn unwrap_nodemailer_error() {
    let unwrapped =
        unwrap_reply("Error: Mail command failed: 421 4.7.0 [TSS04] Messages from 198.51.100.80 temporarily deferred");
    assert_eq!(unwrapped.reply.code, Some(421));
    assert_eq!(unwrapped.stage, Some(Step::Mail));
}

#[test]
fn unwrap_zone_mta_keeps_first_copy() {
    let unwrapped = unwrap_reply(
        "error=\"Invalid greeting. response=554 5.7.0 Blocked - see https://example.net/?ip=198.51.100.24: 554 5.7.0 Blocked - see …\"",
    );
    assert_eq!(unwrapped.stage, Some(Step::Greeting));
    assert_eq!(unwrapped.reply.text(), "Blocked - see https://example.net/?ip=198.51.100.24");
}

#[test]
fn explain_prefers_given_mx_over_wrapper() {
    let (_, classification) = explain(
        "host relay.example.net[198.51.100.4] said: 550 5.7.1 nope (in reply to RCPT TO command)",
        Some("example-com.mail.protection.outlook.com"),
        Rules::builtin(),
    );
    assert_eq!(classification.provider, Provider::Microsoft);
}

#[test]
fn explain_text_names_reason_url_and_steps() {
    let (unwrapped, classification) = explain(
        "host mx.example.net[198.51.100.4] said: 421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=203.0.113.10 (in reply to RCPT TO command)",
        None,
        Rules::builtin(),
    );
    let text = explain_text(&classification, &unwrapped);
    assert!(text.starts_with("Deferred"), "{text}");
    assert!(text.contains("Reason: ip-reputation"), "{text}");
    assert!(text.contains("Lookup: https://ipcheck.proofpoint.com/?ip=203.0.113.10"), "{text}");
    assert!(text.contains("in answer to the rcpt step"), "{text}");
    assert!(text.contains("Next steps:"), "{text}");
}

#[test]
fn explain_json_has_exactly_the_documented_fields() {
    let classification =
        classified("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=203.0.113.10", None);
    let value: serde_json::Value = serde_json::from_str(&explain_json(&classification)).unwrap();
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["advice", "code", "enhanced", "ip", "lookup_url", "outcome", "provider", "reason", "rule"]);
    assert_eq!(value["outcome"], "deferred");
    assert_eq!(value["provider"], "proofpoint");
    assert_eq!(value["reason"], "ip-reputation");
    assert_eq!(value["enhanced"], serde_json::Value::Null);
}
