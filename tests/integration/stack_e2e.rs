//! `mailcanary run` against real receiving software: Postfix with OpenDKIM,
//! OpenDMARC and policyd-spf, delivering over LMTP into Dovecot, with NSD
//! serving the zones. `tests/stack/run-e2e.sh` starts the stack and runs
//! these tests with `MAILCANARY_STACK_ENV` naming its `stack.env`.
//!
//! The stack's Postfix accepts 127.0.0.10, defers 127.0.0.11 with
//! Proofpoint's 421 and disconnects, and rejects 127.0.0.13 with 554. Its
//! Sieve rule files mail that OpenDMARC marks `dmarc=fail` into Junk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys");
const NEEDS_STACK: &str = "needs the receiving stack: tests/stack/run-e2e.sh";

/// The settings that `tests/stack/stack.sh start` wrote into `stack.env`.
struct Stack {
    values: HashMap<String, String>,
}

impl Stack {
    fn from_env() -> Stack {
        let path = std::env::var("MAILCANARY_STACK_ENV")
            .unwrap_or_else(|_| panic!("MAILCANARY_STACK_ENV is not set; {NEEDS_STACK}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let values = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        Stack { values }
    }

    fn get(&self, key: &str) -> &str {
        self.values.get(key).unwrap_or_else(|| panic!("stack.env has no {key}"))
    }
}

/// Where a scenario reads its copies back: Dovecot's Maildir, or Dovecot's
/// IMAP service with STARTTLS or implicit TLS.
#[derive(Clone, Copy)]
enum Collection {
    Maildir,
    ImapStarttls,
    Imaps,
}

/// Writes a scenario routed to the stack's Postfix into `directory`. `paths`
/// are the last octets of the source IPs 127.0.0.N (one path `b-N` each),
/// and `streams` is TOML appended as it is.
fn write_scenario(stack: &Stack, directory: &Path, paths: &[u8], streams: &str, collection: Collection) -> PathBuf {
    let mut text = format!(
        r#"[scenario]
name = "receiving stack"

[sender]
from = "Deliverability Control <control@news.example.com>"
mail_from = "bounces@news.example.com"

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "{KEYS}/demo-rsa.test-key.pem"

[[dkim]]
domain = "news.example.com"
selector = "ed2026"
private_key = "{KEYS}/demo-ed25519.test-key.pem"

[[seed]]
address = "pp-seed-1@customer-a.example"
mailbox = "pp-seed-1"

[[seed]]
address = "pp-seed-2@customer-a.example"
mailbox = "pp-seed-2"

[delivery]
rate_per_minute = 0
retry = ["1s"]
routes = {{ "customer-a.example" = "127.0.0.1:{smtp_port}" }}

[dns]
nameservers = ["{dns}:53"]

[collect]
timeout = "30s"
poll_interval = "500ms"

{streams}
"#,
        smtp_port = stack.get("SMTP_PORT"),
        dns = stack.get("DNS_ADDRESS"),
    );

    for octet in paths {
        text.push_str(&format!(
            "\n[[path]]\nname = \"b-{octet}\"\npool = \"pool-b\"\nsource_ip = \"127.0.0.{octet}\"\nhelo = \"mta{octet}.news.example.com\"\n"
        ));
    }

    // One mailbox per seed, because each seed logs in to IMAP as itself.
    for seed in ["pp-seed-1", "pp-seed-2"] {
        text.push_str(&format!(
            "\n[mailbox.{seed}]\nauthserv_id = \"{}\"\nspam_folders = [\"Junk\"]\n",
            stack.get("AUTHSERV_ID")
        ));
        let source = match collection {
            Collection::Maildir => format!("maildir = \"{}\"\n", stack.get("MAILDIR_ROOT")),
            Collection::ImapStarttls => format!(
                "imap = \"imap://127.0.0.1:{}\"\ntls = \"starttls\"\n{}",
                stack.get("IMAP_PORT"),
                imap_login(stack, seed)
            ),
            Collection::Imaps => {
                format!("imap = \"imaps://127.0.0.1:{}\"\n{}", stack.get("IMAPS_PORT"), imap_login(stack, seed))
            }
        };
        text.push_str(&source);
    }

    let file = directory.join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Returns the IMAP login keys of one seed, with the stack's throwaway CA as
/// the trust root.
fn imap_login(stack: &Stack, seed: &str) -> String {
    format!(
        "username = \"{seed}@customer-a.example\"\npassword_env = \"SEED_PASSWORD\"\nca_file = \"{}\"\n",
        stack.get("TLS_CA")
    )
}

fn run(stack: &Stack, scenario: &Path, runs_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .env("SEED_PASSWORD", stack.get("SEED_PASSWORD"))
        .arg("run")
        .arg("--runs-dir")
        .arg(runs_dir)
        .arg(scenario)
        .output()
        .expect("run mailcanary")
}

/// Returns the record of the only run under `runs_dir`.
fn only_record(runs_dir: &Path) -> (PathBuf, Value) {
    let entries: Vec<PathBuf> =
        std::fs::read_dir(runs_dir).expect("runs directory exists").map(|entry| entry.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "exactly one run directory, found {entries:?}");
    let directory = entries.into_iter().next().unwrap();
    let text = std::fs::read_to_string(directory.join("run.json")).expect("run.json exists");
    (directory, serde_json::from_str(&text).expect("run.json is JSON"))
}

fn attempts_of<'a>(record: &'a Value, path: &str) -> Vec<&'a Value> {
    record["attempts"].as_array().unwrap().iter().filter(|attempt| attempt["path"] == path).collect()
}

fn messages_of<'a>(record: &'a Value, stream: &str) -> Vec<&'a Value> {
    record["messages"].as_array().unwrap().iter().filter(|message| message["stream"] == stream).collect()
}

fn copy_of<'a>(record: &'a Value, message: &Value) -> &'a Value {
    record["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|copy| copy["token"] == message["token"])
        .unwrap_or_else(|| panic!("no copy of message {} was collected", message["sequence"]))
}

fn receiver_result<'a>(copy: &'a Value, method: &str) -> Vec<&'a str> {
    copy["verdicts"]["receiver"]["methods"]
        .as_array()
        .map(|methods| {
            methods.iter().filter(|m| m["method"] == method).map(|m| m["result"].as_str().unwrap()).collect()
        })
        .unwrap_or_default()
}

/// Returns the unfolded Authentication-Results fields of a saved copy that
/// carry `authserv_id`.
fn authentication_results(directory: &Path, copy: &Value, authserv_id: &str) -> Vec<String> {
    let text = std::fs::read_to_string(directory.join(copy["saved_as"].as_str().unwrap())).unwrap();
    let header_block = text.split("\r\n\r\n").next().unwrap().split("\n\n").next().unwrap();
    let mut fields: Vec<String> = Vec::new();
    for line in header_block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.trim_end().to_string());
        }
    }
    let prefix = format!("Authentication-Results: {authserv_id};");
    fields.into_iter().filter(|field| field.starts_with(&prefix)).collect()
}

/// Returns the queue ID from Postfix's `250 2.0.0 Ok: queued as ID` reply.
fn queue_id(attempt: &Value) -> String {
    let line = attempt["reply"]["lines"][0].as_str().unwrap();
    line.strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a Postfix queue reply: {line}"))
        .to_string()
}

fn criterion<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["verdict"]["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|criterion| criterion["name"] == name)
        .unwrap_or_else(|| panic!("no gate criterion {name:?}"))
}

const CONTROL_ON_ALL_PATHS: &str = r#"
[[stream]]
name = "control"
role = "control"
paths = ["b-10", "b-11", "b-13"]
subject = "Control {run_id} via {path}"
body = "Control message {sequence} via {path} to {seed}."
"#;

/// Sends control mail through b-10 (accepted), b-11 (421) and b-13 (554)
/// and reads the copies back through `collection`.
fn check_accept_defer_block(collection: Collection) {
    let stack = Stack::from_env();
    let directory = tempfile::tempdir().unwrap();
    let scenario = write_scenario(&stack, directory.path(), &[10, 11, 13], CONTROL_ON_ALL_PATHS, collection);
    let runs = directory.path().join("runs");
    let output = run(&stack, &scenario, &runs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The stack's SPF record covers 127.0.0.10 to .12, so the preflight
    // finds that b-13 is not authorized: critical, besides the refusals.
    assert_eq!(output.status.code(), Some(4), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (run_directory, record) = only_record(&runs);
    assert_eq!(record["verdict"]["checkpoint"], "critical");
    let records = criterion(&record, "sender authentication records");
    assert_eq!(records["passed"], false);
    assert!(records["detail"].as_str().unwrap().contains("127.0.0.13"), "{records}");
    assert_eq!(criterion(&record, "control accepted")["passed"], false);

    // b-10: accepted, and Postfix's log names the same queue ID for the
    // same Message-ID and client.
    let postfix_log = std::fs::read_to_string(stack.get("POSTFIX_LOG")).unwrap();
    let accepted = attempts_of(&record, "b-10");
    assert_eq!(accepted.len(), 2, "one control message per seed");
    for attempt in &accepted {
        assert_eq!(attempt["outcome"], "accepted");
        let id = queue_id(attempt);
        let message = &record["messages"][attempt["sequence"].as_u64().unwrap() as usize - 1];
        assert_eq!(message["sequence"], attempt["sequence"]);
        let message_id = message["message_id"].as_str().unwrap();
        assert!(
            postfix_log.contains(&format!("{id}: message-id={message_id}")),
            "postfix.log has {id} with {message_id}"
        );
        assert!(
            postfix_log.contains(&format!("{id}: client=mta10.news.example.com[127.0.0.10]")),
            "postfix.log has {id} from 127.0.0.10"
        );
    }

    // b-11: Proofpoint's deferral naming 127.0.0.11, given at RCPT TO, on
    // the first try and on the retry. Postfix disconnects after a 421, so
    // nothing is sent after that reply.
    let deferred = attempts_of(&record, "b-11");
    assert_eq!(deferred.len(), 4, "two messages, each tried twice");
    for attempt in &deferred {
        assert_eq!(attempt["outcome"], "deferred");
        assert_eq!(attempt["reply"]["code"], 421);
        let line = attempt["reply"]["lines"][0].as_str().unwrap();
        assert!(line.contains("Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11"), "{line}");
        let classification = &attempt["classification"];
        assert_eq!(classification["provider"], "proofpoint");
        assert_eq!(classification["reason"], "ip-reputation");
        assert_eq!(classification["ip"], "127.0.0.11");
        let exchanges = attempt["transactions"][0]["exchanges"].as_array().unwrap();
        assert_eq!(exchanges.last().unwrap()["step"], "rcpt", "the 421 ends the session");
        assert_eq!(attempt["failure"], Value::Null, "the disconnect after a 421 is no failure");
    }
    assert_eq!(deferred.iter().filter(|attempt| attempt["try_number"] == 2).count(), 2);

    // b-13: blocked with 554, which is not retried.
    let blocked = attempts_of(&record, "b-13");
    assert_eq!(blocked.len(), 2, "two messages, one try each");
    for attempt in &blocked {
        assert_eq!(attempt["outcome"], "rejected");
        assert_eq!(attempt["reply"]["code"], 554);
        let line = attempt["reply"]["lines"][0].as_str().unwrap();
        assert!(line.contains("Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=127.0.0.13"), "{line}");
        assert_eq!(attempt["classification"]["provider"], "proofpoint");
        assert_eq!(attempt["classification"]["ip"], "127.0.0.13");
    }

    // The accepted copies are in each seed's INBOX, authenticated by the
    // milters and policyd-spf.
    let authserv_id = stack.get("AUTHSERV_ID");
    let copies = record["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    for copy in copies {
        assert_eq!(copy["placement"], "inbox");
        assert_eq!(copy["folder"], "INBOX");
        assert_eq!(copy["verdicts"]["receiver"]["header"]["authserv_id"], authserv_id);
        assert_eq!(copy["verdicts"]["gateway_hop"]["client_ip"], "127.0.0.10");

        let fields = authentication_results(&run_directory, copy, authserv_id).join("\n");
        assert!(fields.contains("spf=pass"), "policyd-spf passes SPF:\n{fields}");
        assert!(fields.contains("header.s=rsa2026"), "OpenDKIM checks the RSA signature:\n{fields}");
        assert!(fields.contains("header.s=ed2026"), "OpenDKIM checks the Ed25519 signature:\n{fields}");
        assert!(!fields.contains("dkim=fail"), "no signature fails at OpenDKIM:\n{fields}");
        assert!(fields.contains("dmarc=pass"), "OpenDMARC passes DMARC:\n{fields}");

        // Each daemon writes its own field with the same authserv-id, and
        // the run merges them: OpenDMARC's dmarc, OpenDKIM's two dkim
        // results and policyd-spf's spf.
        assert_eq!(receiver_result(copy, "dmarc"), ["pass"], "receiver dmarc");
        assert_eq!(receiver_result(copy, "spf"), ["pass"], "receiver spf");
        assert_eq!(receiver_result(copy, "dkim"), ["pass", "pass"], "receiver dkim, RSA and Ed25519");
        let own = &copy["verdicts"]["own"];
        assert_eq!(own["spf"]["result"], "pass");
        assert_eq!(own["dmarc"]["result"], "pass");
        assert!(own["dkim"].as_array().unwrap().iter().all(|dkim| dkim["result"] == "pass"), "own dkim passes");
    }

    assert!(stdout.contains("ipcheck.proofpoint.com/?ip=127.0.0.11"), "summary shows the deferral: {stdout}");
    assert!(stdout.contains("checkpoint: critical"), "summary shows the checkpoint: {stdout}");
}

/// Sends a clean control stream and a control stream with a foreign From
/// through b-10 and reads the copies back through `collection`.
fn check_spoofed_from(collection: Collection) {
    let stack = Stack::from_env();
    let directory = tempfile::tempdir().unwrap();
    let streams = r#"
[[stream]]
name = "control"
role = "control"
paths = ["b-10"]
subject = "Control {run_id}"
body = "Control message {sequence} to {seed}."

# DKIM signs for news.example.com, so a From in bank.example.com (DMARC
# p=reject in the stack's DNS) is not aligned.
[[stream]]
name = "spoofed"
role = "control"
paths = ["b-10"]
seeds = ["pp-seed-1@customer-a.example"]
from = "Bank <alerts@bank.example.com>"
subject = "Spoofed {run_id}"
body = "A From domain that no signature covers."
"#;
    let scenario = write_scenario(&stack, directory.path(), &[10], streams, collection);
    let runs = directory.path().join("runs");
    let output = run(&stack, &scenario, &runs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Control mail failing DMARC is critical.
    assert_eq!(output.status.code(), Some(4), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (run_directory, record) = only_record(&runs);
    assert_eq!(record["verdict"]["checkpoint"], "critical");

    let spoofed = messages_of(&record, "spoofed");
    assert_eq!(spoofed.len(), 1);
    assert_eq!(spoofed[0]["outcome"], "accepted", "OpenDMARC labels the message and does not reject it");
    let copy = copy_of(&record, spoofed[0]);
    assert_eq!(copy["placement"], "spam");
    assert_eq!(copy["folder"], "Junk");
    assert_eq!(receiver_result(copy, "dmarc"), ["fail"], "receiver dmarc");
    assert_eq!(copy["verdicts"]["own"]["dmarc"]["result"], "fail");
    let fields = authentication_results(&run_directory, copy, stack.get("AUTHSERV_ID")).join("\n");
    assert!(fields.contains("dmarc=fail"), "OpenDMARC fails DMARC:\n{fields}");
    assert!(fields.contains("header.from=bank.example.com"), "{fields}");

    for message in messages_of(&record, "control") {
        let copy = copy_of(&record, message);
        assert_eq!(copy["placement"], "inbox", "control to {} is in the inbox", message["seed"]);
        assert_eq!(receiver_result(copy, "dmarc"), ["pass"]);
    }

    // The failure is reported as an authentication problem.
    assert_eq!(criterion(&record, "control dmarc passes at the receiver")["passed"], false);
    assert_eq!(criterion(&record, "control in the inbox")["passed"], false);
    let diagnosis: Vec<&str> =
        record["verdict"]["diagnosis"].as_array().unwrap().iter().map(|line| line.as_str().unwrap()).collect();
    assert!(
        diagnosis.iter().any(|line| line.contains("fails dmarc at the receiver")),
        "diagnosis names the receiver's dmarc failure: {diagnosis:?}"
    );
    assert!(stdout.contains("checkpoint: critical"), "{stdout}");
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn maildir_clean_control_is_healthy() {
    let stack = Stack::from_env();
    let directory = tempfile::tempdir().unwrap();
    let streams = r#"
[[stream]]
name = "control"
role = "control"
paths = ["b-10"]
subject = "Control {run_id}"
body = "Control message {sequence} to {seed}."
"#;
    let scenario = write_scenario(&stack, directory.path(), &[10], streams, Collection::Maildir);
    let runs = directory.path().join("runs");
    let output = run(&stack, &scenario, &runs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (_, record) = only_record(&runs);
    assert_eq!(record["verdict"]["checkpoint"], "healthy");
    let copies = record["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|copy| copy["placement"] == "inbox"), "every copy is in the inbox");
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn maildir_partial_deferral_is_warning() {
    let stack = Stack::from_env();
    let directory = tempfile::tempdir().unwrap();
    let streams = r#"
[[stream]]
name = "control"
role = "control"
paths = ["b-10", "b-11"]
subject = "Control {run_id} via {path}"
body = "Control message {sequence} via {path} to {seed}."
"#;
    let scenario = write_scenario(&stack, directory.path(), &[10, 11], streams, Collection::Maildir);
    let runs = directory.path().join("runs");
    let output = run(&stack, &scenario, &runs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // b-11 is deferred while b-10 is accepted and authenticated: warning.
    assert_eq!(output.status.code(), Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (_, record) = only_record(&runs);
    assert_eq!(record["verdict"]["checkpoint"], "warning");
    assert_eq!(criterion(&record, "control accepted")["passed"], false);
    assert_eq!(criterion(&record, "sender authentication records")["passed"], true);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn maildir_accept_defer_block() {
    check_accept_defer_block(Collection::Maildir);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn imap_starttls_accept_defer_block() {
    check_accept_defer_block(Collection::ImapStarttls);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn imaps_accept_defer_block() {
    check_accept_defer_block(Collection::Imaps);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn maildir_spoofed_from_in_junk() {
    check_spoofed_from(Collection::Maildir);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn imap_starttls_spoofed_from_in_junk() {
    check_spoofed_from(Collection::ImapStarttls);
}

#[test]
#[ignore = "needs the receiving stack: tests/stack/run-e2e.sh"]
fn imaps_spoofed_from_in_junk() {
    check_spoofed_from(Collection::Imaps);
}
