//! `mailcanary check --dns` on zone fixtures served by the in-process DNS
//! server: each broken record produces its named finding and fix.

use std::path::Path;
use std::process::Command;

const RSA_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys/demo-rsa.test-key.pem");
const ED25519_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys/demo-ed25519.test-key.pem");
const DEMO_ZONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/zones/news.example.com.zone");

const SOA: &str =
    "$TTL 300\n@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60\n@ IN NS ns1.example.com.\n";

/// Returns the demo's sender zone with the published DKIM keys, its SPF record for
/// 192.0.2.10, and A records for the path's HELO name.
fn sender_zone() -> String {
    let demo = std::fs::read_to_string(DEMO_ZONE).unwrap();
    let keys: Vec<&str> = demo.lines().filter(|line| line.contains("._domainkey")).collect();
    format!(
        "$ORIGIN news.example.com.\n{SOA}mta10 IN A 192.0.2.10\n@ IN TXT \"v=spf1 ip4:192.0.2.10 -all\"\n_dmarc IN TXT \"v=DMARC1; p=reject; rua=mailto:dmarc@news.example.com\"\n{}\n",
        keys.join("\n")
    )
}

fn reverse_zone() -> String {
    format!("$ORIGIN 2.0.192.in-addr.arpa.\n{SOA}10 IN PTR mta10.news.example.com.\n")
}

/// Writes the scenario and zones, runs `check --dns`, and returns its exit
/// code and output.
fn check(directory: &Path, sender: &str, reverse: &str, extra: &str) -> (i32, String) {
    std::fs::write(directory.join("sender.zone"), sender).unwrap();
    std::fs::write(directory.join("reverse.zone"), reverse).unwrap();
    std::fs::write(
        directory.join("seed.zone"),
        format!("$ORIGIN customer-a.example.net.\n{SOA}@ IN MX 10 mx0a-001.pphosted.example.\n"),
    )
    .unwrap();
    let scenario = format!(
        r#"[scenario]
name = "preflight"

[sender]
from = "Control <control@news.example.com>"
mail_from = "bounces@news.example.com"

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "{RSA_KEY}"

[[dkim]]
domain = "news.example.com"
selector = "ed2026"
private_key = "{ED25519_KEY}"

[[path]]
name = "b-10"
source_ip = "192.0.2.10"
helo = "mta10.news.example.com"

[[seed]]
address = "seed@customer-a.example.net"

[[stream]]
name = "control"
role = "control"
paths = ["b-10"]
subject = "Control"
body = "Control message."

[dns]
zones = ["sender.zone", "reverse.zone", "seed.zone"]
{extra}
"#
    );
    let file = directory.join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary")).args(["check", "--dns"]).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap(), text)
}

/// Asserts that the output has a finding line with `status`, `check` and
/// `fragment`, and, when `fix` is given, a fix line containing it.
fn assert_finding(output: &str, status: &str, check: &str, fragment: &str, fix: Option<&str>) {
    let lines: Vec<&str> = output.lines().collect();
    let position = lines
        .iter()
        .position(|line| line.contains(&format!("[{status:<4}] {check:<10}")) && line.contains(fragment))
        .unwrap_or_else(|| panic!("no [{status}] {check} finding with {fragment:?} in:\n{output}"));
    if let Some(fix) = fix {
        let next = lines.get(position + 1).copied().unwrap_or("");
        assert!(
            next.trim_start().starts_with("fix:") && next.contains(fix),
            "expected fix {fix:?} after {:?}, got {next:?}",
            lines[position]
        );
    }
}

#[test]
fn clean_records_pass() {
    let directory = tempfile::tempdir().unwrap();
    let (code, output) = check(directory.path(), &sender_zone(), &reverse_zone(), "");
    assert_eq!(code, 0, "{output}");
    assert_finding(&output, "pass", "fcrdns", "mta10.news.example.com resolves back to 192.0.2.10", None);
    assert_finding(&output, "pass", "helo", "matches the PTR", None);
    assert_finding(&output, "pass", "spf", "spf=pass for 192.0.2.10", None);
    assert_finding(&output, "pass", "dkim", "2048-bit rsa key matches", None);
    assert_finding(&output, "pass", "dmarc", "aligned with From news.example.com", None);
    assert_finding(&output, "info", "mx", "provider other", None);
}

#[test]
fn each_broken_record_is_named() {
    let sender = sender_zone();
    let reverse = reverse_zone();
    let rsa_line = sender.lines().find(|line| line.starts_with("rsa2026")).unwrap().to_string();
    let ed_line = sender.lines().find(|line| line.starts_with("ed2026")).unwrap().to_string();
    // One TXT string contains at most 255 bytes, so the long record is two
    // strings, which receivers join without a separator.
    let first: String = (1..=6).map(|n| format!(" include:s{n}.news.example.com")).collect();
    let second: String = (7..=11).map(|n| format!(" include:s{n}.news.example.com")).collect();
    let includes = format!("{first}\" \"{second}");
    let include_records: String =
        (1..=11).map(|n| format!("s{n} IN TXT \"v=spf1 ip4:198.51.100.{n} -all\"\n")).collect();

    // (label, sender zone, reverse zone, status, check, fragment, fix)
    type Case<'a> = (&'a str, String, String, &'a str, &'a str, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "no PTR",
            sender.clone(),
            format!("$ORIGIN 2.0.192.in-addr.arpa.\n{SOA}"),
            "FAIL",
            "ptr",
            "192.0.2.10 has no PTR record",
            Some("publish a PTR record naming mta10.news.example.com"),
        ),
        (
            "PTR not forward-confirmed",
            sender.replace("mta10 IN A 192.0.2.10", "mta10 IN A 198.51.100.99"),
            reverse.clone(),
            "FAIL",
            "fcrdns",
            "is not forward-confirmed",
            Some("publish an A record mta10.news.example.com -> 192.0.2.10"),
        ),
        (
            "HELO not resolving",
            sender.replace("mta10 IN A 192.0.2.10\n", ""),
            reverse.clone(),
            "FAIL",
            "helo",
            "the HELO name mta10.news.example.com does not resolve",
            Some("publish an A record mta10.news.example.com -> 192.0.2.10"),
        ),
        (
            "SPF missing the IP",
            sender.replace("ip4:192.0.2.10", "ip4:198.51.100.7"),
            reverse.clone(),
            "FAIL",
            "spf",
            "spf=fail for 192.0.2.10",
            Some("add ip4:192.0.2.10 to the SPF record (TXT) of news.example.com"),
        ),
        (
            "two SPF records",
            sender.replace("@ IN TXT \"v=spf1", "@ IN TXT \"v=spf1 ip4:198.51.100.8 -all\"\n@ IN TXT \"v=spf1"),
            reverse.clone(),
            "FAIL",
            "spf-record",
            "publishes 2 SPF records",
            Some("merge them into one TXT record"),
        ),
        (
            "11 lookups",
            sender.replace("\"v=spf1 ip4:192.0.2.10 -all\"", &format!("\"v=spf1 ip4:192.0.2.10{includes} -all\""))
                + &include_records,
            reverse.clone(),
            "FAIL",
            "spf-record",
            "11 DNS-querying terms",
            Some("flatten includes"),
        ),
        (
            "DKIM key mismatch",
            sender.replace(
                &rsa_line,
                "rsa2026._domainkey IN TXT \"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong\"",
            ),
            reverse.clone(),
            "FAIL",
            "dkim",
            "does not match the scenario's private key",
            Some("publish TXT rsa2026._domainkey.news.example.com"),
        ),
        (
            "testing flag",
            sender.replace(&ed_line, &ed_line.replace("v=DKIM1;", "v=DKIM1; t=y;")),
            reverse.clone(),
            "warn",
            "dkim",
            "t=y",
            Some("remove t=y"),
        ),
        (
            "revoked key",
            sender.replace(&ed_line, "ed2026._domainkey IN TXT \"v=DKIM1; k=ed25519; p=\""),
            reverse.clone(),
            "FAIL",
            "dkim",
            "p= is empty: the key is revoked",
            Some("publish TXT ed2026._domainkey.news.example.com"),
        ),
        (
            "DMARC missing",
            sender.replace("_dmarc IN TXT \"v=DMARC1; p=reject; rua=mailto:dmarc@news.example.com\"\n", ""),
            reverse.clone(),
            "FAIL",
            "dmarc",
            "publishes no DMARC record",
            Some("publish TXT _dmarc.news.example.com"),
        ),
    ];
    let mut failures = Vec::new();
    for (label, sender, reverse, status, check_name, fragment, fix) in cases {
        let directory = tempfile::tempdir().unwrap();
        let (code, output) = check(directory.path(), &sender, &reverse, "");
        let expected_code = if status == "FAIL" { 4 } else { 3 };
        let found = std::panic::catch_unwind(|| assert_finding(&output, status, check_name, fragment, fix));
        if found.is_err() || code != expected_code {
            failures.push(format!("{label}: exit {code} (expected {expected_code})\n{output}"));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn dmarc_reject_with_nothing_aligned() {
    let directory = tempfile::tempdir().unwrap();
    // The From moves to another domain with p=reject while MAIL FROM and
    // the signatures stay on news.example.com.
    let sender = sender_zone();
    let other = format!(
        "$ORIGIN brand.example.org.\n{SOA}_dmarc IN TXT \"v=DMARC1; p=reject; rua=mailto:d@brand.example.org\"\n"
    );
    std::fs::write(directory.path().join("other.zone"), other).unwrap();
    let (_, _) = check(directory.path(), &sender, &reverse_zone(), "");
    let file = directory.path().join("scenario.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Control <control@news.example.com>", "Brand <news@brand.example.org>")
        .replace("\"seed.zone\"]", "\"seed.zone\", \"other.zone\"]");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary")).args(["check", "--dns"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{stdout}");
    assert_finding(
        &stdout,
        "FAIL",
        "dmarc",
        "neither SPF (MAIL FROM news.example.com) nor DKIM",
        Some("sign with d=brand.example.org"),
    );
}

#[test]
fn dnsbl_listing_is_reported() {
    let directory = tempfile::tempdir().unwrap();
    let list =
        format!("$ORIGIN bl.example.\n{SOA}10.2.0.192 IN A 127.0.0.2\n10.2.0.192 IN TXT \"listed for spam traps\"\n");
    std::fs::write(directory.path().join("list.zone"), list).unwrap();
    let (_, _) = check(directory.path(), &sender_zone(), &reverse_zone(), "");
    let file = directory.path().join("scenario.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"seed.zone\"]", "\"seed.zone\", \"list.zone\"]\n\n[preflight]\ndnsbl = [\"bl.example\"]");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary")).args(["check", "--dns"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{stdout}");
    assert_finding(
        &stdout,
        "FAIL",
        "dnsbl",
        "192.0.2.10 is listed on bl.example (return code 127.0.0.2): listed for spam traps",
        Some("request delisting"),
    );
}
