//! `mailcanary run` end to end: the demo scenario against the in-process
//! simulator, and scenarios routed to scripted SMTP servers that misbehave.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/demo.toml");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys/demo-rsa.test-key.pem");

fn run(scenario: &Path, runs_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .arg("run")
        .arg("--runs-dir")
        .arg(runs_dir)
        .arg(scenario)
        .output()
        .expect("run mailcanary")
}

/// Returns the only directory under `runs_dir`, failing if there are more.
fn only_run_directory(runs_dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .expect("runs directory exists")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "exactly one run directory, found {entries:?}");
    entries.into_iter().next().unwrap()
}

fn read_record(directory: &Path) -> Value {
    let text = std::fs::read_to_string(directory.join("run.json")).expect("run.json exists");
    serde_json::from_str(&text).expect("run.json is JSON")
}

fn attempts_of<'a>(record: &'a Value, path: &str) -> Vec<&'a Value> {
    record["attempts"].as_array().expect("attempts").iter().filter(|attempt| attempt["path"] == path).collect()
}

/// Files in a Maildir folder's `new/`.
fn delivered(folder: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(folder.join("new")) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn demo_run_records_every_attempt() {
    let runs = tempfile::tempdir().unwrap();
    let output = run(Path::new(DEMO), runs.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // One path of the pool is deferred and the other accepted: warning.
    assert_eq!(output.status.code(), Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let directory = only_run_directory(runs.path());
    let record = read_record(&directory);
    assert_eq!(record["totals"]["planned"], 8);

    for attempt in record["attempts"].as_array().unwrap() {
        for field in ["path", "pool", "source_ip", "helo", "seed", "stream", "outcome", "started_at"] {
            assert!(!attempt[field].is_null(), "attempt {} lacks {field}", attempt["number"]);
        }
        let transcript = directory.join(attempt["transcript"].as_str().unwrap());
        assert!(transcript.is_file(), "transcript {} exists", transcript.display());
        for transaction in attempt["transactions"].as_array().unwrap() {
            for exchange in transaction["exchanges"].as_array().unwrap() {
                if let Some(reply) = exchange["reply"].as_object() {
                    assert!(!reply["lines"].as_array().unwrap().is_empty(), "a recorded reply keeps its raw lines");
                    assert!(exchange["replied_at"].as_str().unwrap().ends_with('Z'), "times are UTC");
                }
            }
        }
    }

    // b-10 is accepted on its first try.
    let accepted = attempts_of(&record, "b-10");
    assert_eq!(accepted.len(), 4);
    for attempt in &accepted {
        assert_eq!(attempt["outcome"], "accepted");
        assert_eq!(attempt["source_ip"], "127.0.0.10");
        assert_eq!(attempt["pool"], "pool-b");
        assert_eq!(attempt["helo"], "mta10.news.example.com");
    }

    // b-11 is deferred with Proofpoint's reply naming its own source IP, on
    // the first try and on the retry.
    let deferred = attempts_of(&record, "b-11");
    assert_eq!(deferred.len(), 8, "4 messages, each tried twice");
    for attempt in &deferred {
        assert_eq!(attempt["outcome"], "deferred");
        let reply = &attempt["reply"];
        assert_eq!(reply["code"], 421);
        let line = reply["lines"][0].as_str().unwrap();
        assert_eq!(line, "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11");
    }
    let retries = deferred.iter().filter(|attempt| attempt["try_number"] == 2).count();
    assert_eq!(retries, 4);

    // The accepted copies are in the simulator's Maildir, authenticated.
    for seed in ["pp-seed-1@customer-a.example.net", "pp-seed-2@customer-a.example.net"] {
        let folder = directory.join("simulator/maildir").join(seed);
        let copies = delivered(&folder);
        assert_eq!(copies.len(), 2, "control and bulk copies for {seed}");
        for copy in copies {
            let text = std::fs::read_to_string(&copy).unwrap();
            let header = text
                .lines()
                .find(|line| line.starts_with("Authentication-Results:"))
                .expect("an Authentication-Results header");
            let unfolded: String = text[text.find(header).unwrap()..]
                .lines()
                .take_while(|line| line.starts_with("Authentication-Results:") || line.starts_with([' ', '\t']))
                .collect::<Vec<_>>()
                .join(" ");
            assert!(unfolded.contains("mx1.customer-a.example.net"), "authserv-id in {unfolded}");
            assert!(unfolded.contains("spf=pass"), "spf=pass in {unfolded}");
            assert!(unfolded.contains("dkim=pass"), "dkim=pass in {unfolded}");
            assert!(unfolded.contains("dmarc=pass"), "dmarc=pass in {unfolded}");
            assert!(text.contains("X-Mailcanary-Token: mc"), "tracking header kept");
        }
    }

    // The journal has a start and a finish line for every attempt.
    let journal = std::fs::read_to_string(directory.join("events.jsonl")).unwrap();
    let starts = journal.lines().filter(|line| line.contains("\"send-started\"")).count();
    let finishes = journal.lines().filter(|line| line.contains("\"send-finished\"")).count();
    assert_eq!(starts, 12);
    assert_eq!(finishes, 12);

    assert!(stdout.contains("ipcheck.proofpoint.com/?ip=127.0.0.11"), "summary shows the deferral: {stdout}");
    assert!(stdout.contains("checkpoint: warning (throttle and segment)"), "summary shows the checkpoint: {stdout}");

    // Every accepted copy was collected, saved and verified on both sides.
    let copies = record["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 4);
    for copy in copies {
        assert_eq!(copy["placement"], "inbox");
        assert!(directory.join(copy["saved_as"].as_str().unwrap()).is_file(), "saved copy exists");
        let verdicts = &copy["verdicts"];
        assert_eq!(verdicts["receiver"]["header"]["authserv_id"], "mx1.customer-a.example.net");
        for method in ["spf", "dkim", "dmarc"] {
            let receiver: Vec<&Value> =
                verdicts["receiver"]["methods"].as_array().unwrap().iter().filter(|m| m["method"] == method).collect();
            assert!(!receiver.is_empty(), "receiver {method} result present");
            assert!(receiver.iter().all(|m| m["result"] == "pass"), "receiver {method} passes");
        }
        assert!(verdicts["own"]["dkim"].as_array().unwrap().iter().all(|m| m["result"] == "pass"), "own dkim passes");
        assert_eq!(verdicts["own"]["dkim"].as_array().unwrap().len(), 2, "both signatures checked");
        assert_eq!(verdicts["own"]["spf"]["result"], "pass");
        assert_eq!(verdicts["own"]["dmarc"]["result"], "pass");
        assert_eq!(verdicts["gateway_hop"]["client_ip"], "127.0.0.10");
    }
    assert_eq!(record["verdict"]["checkpoint"], "warning");

    // The evidence packet names the deferred IP in full, with the verbatim reply.
    let report = std::fs::read_to_string(directory.join("report.md")).expect("report.md exists");
    assert!(report.contains("| b-11 | pool-b | 127.0.0.11 |"), "{report}");
    assert!(report.contains("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11"));
    assert!(report.contains("Suspended the compromised tenant"), "context is copied");
    check_snapshot("demo-report.md", &redact(&report));

    // gate re-evaluates the saved run to the same checkpoint and exit code.
    let gate = Command::new(env!("CARGO_BIN_EXE_mailcanary")).arg("gate").arg(&directory).output().unwrap();
    assert_eq!(gate.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&gate.stdout).contains("checkpoint: warning"));

    // A stricter gate from another scenario changes nothing here, a relaxed one makes it healthy.
    let relaxed = directory.parent().unwrap().join("relaxed.toml");
    let demo = std::fs::read_to_string(DEMO)
        .unwrap()
        .replace("[context]", "[gate]\nmax_control_deferral_rate = 0.5\nmax_bulk_deferral_rate = 0.5\n\n[context]");
    let demo = demo
        .replace("\"keys/", &format!("\"{}/scenarios/keys/", env!("CARGO_MANIFEST_DIR")))
        .replace("\"templates/", &format!("\"{}/scenarios/templates/", env!("CARGO_MANIFEST_DIR")))
        .replace("\"zones/", &format!("\"{}/scenarios/zones/", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&relaxed, demo).unwrap();
    let gate = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .arg("gate")
        .arg(&directory)
        .arg("--scenario")
        .arg(&relaxed)
        .output()
        .unwrap();
    assert_eq!(gate.status.code(), Some(0), "stdout: {}", String::from_utf8_lossy(&gate.stdout));

    // JUnit XML names each criterion as a test case.
    let junit = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .args(["report", "--format", "junit"])
        .arg(&directory)
        .output()
        .unwrap();
    let junit = String::from_utf8_lossy(&junit.stdout);
    assert!(junit.contains("<testcase classname=\"gate\" name=\"control accepted\">"), "{junit}");
    assert!(junit.contains("failures=\"2\""), "{junit}");
}

/// Replaces the parts of a report that change from run to run.
fn redact(text: &str) -> String {
    let patterns = [
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC", "[time]"),
        (r"\d{8}T\d{6}Z-[a-z0-9-]+", "[run id]"),
        (r"mc[a-z2-7]{24}", "[token]"),
        (r"queued as [A-Z0-9]+", "queued as [queue id]"),
        (r"mailcanary \d+\.\d+\.\d+", "mailcanary [version]"),
    ];
    let mut text = text.to_string();
    for (pattern, replacement) in patterns {
        text = regex::Regex::new(pattern).unwrap().replace_all(&text, replacement).into_owned();
    }
    text
}

/// Compares `actual` with `tests/snapshots/NAME`; with
/// MAILCANARY_UPDATE_SNAPSHOTS=1 in the environment, writes it instead.
fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("MAILCANARY_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{} is missing; run with MAILCANARY_UPDATE_SNAPSHOTS=1 to create it", path.display())
    });
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from the snapshot from line {}:\nexpected: {:?}\nactual:   {:?}\nrun with MAILCANARY_UPDATE_SNAPSHOTS=1 to accept the new output",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// Starts a scripted SMTP server on 127.0.0.1 that replies to each client line with the
/// next scripted reply, the first one being the greeting. `None` closes the
/// connection at that point.
fn scripted_server(script: Vec<Option<&'static str>>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve_script(stream, script)
    });
    (port, handle)
}

fn serve_script(mut stream: TcpStream, script: Vec<Option<&'static str>>) -> Vec<String> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut received = Vec::new();
    let mut in_data = false;
    for (index, step) in script.into_iter().enumerate() {
        if index > 0 {
            // Read one command, or a whole message after DATA.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return received;
                }
                received.push(line.trim_end().to_string());
                if !in_data || line == ".\r\n" {
                    break;
                }
            }
            in_data = received.last().is_some_and(|line| line.eq_ignore_ascii_case("DATA"));
        }
        match step {
            Some(reply) => stream.write_all(reply.as_bytes()).unwrap(),
            None => return received,
        }
    }
    received
}

fn routed_scenario(directory: &Path, port: u16, extra: &str) -> PathBuf {
    std::fs::copy(KEY, directory.join("key.pem")).unwrap();
    let text = format!(
        r#"[scenario]
name = "scripted"

[sender]
from = "Control <control@news.example.com>"
mail_from = "bounces@news.example.com"

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "key.pem"

[[path]]
name = "p1"
source_ip = "127.0.0.1"
helo = "mta1.news.example.com"

[[seed]]
address = "seed@customer-b.example.net"

[[stream]]
name = "control"
role = "control"
paths = ["p1"]
subject = "Control {{run_id}}"
body = "Plain control message."

[delivery]
rate_per_minute = 0
routes = {{ "customer-b.example.net" = "127.0.0.1:{port}" }}
{extra}
"#
    );
    let file = directory.join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn greeting_deferral_is_recorded_without_quit() {
    let directory = tempfile::tempdir().unwrap();
    let (port, server) = scripted_server(vec![Some(
        "421 4.7.0 mx.customer-b.example.net Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.1\r\n",
    )]);
    let scenario = routed_scenario(directory.path(), port, "");
    let output = run(&scenario, &directory.path().join("runs"));
    // The only control message is refused on the only path: critical.
    assert_eq!(output.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let received = server.join().unwrap();
    assert!(received.is_empty(), "nothing is sent after a 421 greeting, got {received:?}");

    let record = read_record(&only_run_directory(&directory.path().join("runs")));
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["outcome"], "deferred");
    assert_eq!(attempt["reply"]["enhanced"], "4.7.0");
    assert_eq!(attempt["transactions"][0]["exchanges"][1]["step"], "greeting");
}

#[test]
fn drop_mid_data_is_a_failure() {
    let directory = tempfile::tempdir().unwrap();
    let (port, server) = scripted_server(vec![
        Some("220 mx.customer-b.example.net ESMTP\r\n"),
        Some("250-mx.customer-b.example.net\r\n250 8BITMIME\r\n"),
        Some("250 2.1.0 Ok\r\n"),
        Some("250 2.1.5 Ok\r\n"),
        Some("354 End data with <CR><LF>.<CR><LF>\r\n"),
        None,
    ]);
    let scenario = routed_scenario(directory.path(), port, "");
    let output = run(&scenario, &directory.path().join("runs"));
    // The only control message is refused on the only path: critical.
    assert_eq!(output.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    server.join().unwrap();

    let record = read_record(&only_run_directory(&directory.path().join("runs")));
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["outcome"], "failed");
    assert_eq!(attempt["failure"]["kind"], "connection-dropped");
    assert_eq!(attempt["failure"]["step"], "end-of-data");
}

#[test]
fn multiline_rcpt_deferral_keeps_every_line() {
    let directory = tempfile::tempdir().unwrap();
    let (port, server) = scripted_server(vec![
        Some("220 mx.customer-b.example.net ESMTP\r\n"),
        Some("250-mx.customer-b.example.net\r\n250 ENHANCEDSTATUSCODES\r\n"),
        Some("250 2.1.0 Ok\r\n"),
        Some(
            "451-4.7.650 The mail server [127.0.0.1] has been temporarily rate limited\r\n451 4.7.650 due to IP reputation. (S3113)\r\n",
        ),
        Some("221 2.0.0 Bye\r\n"),
    ]);
    let scenario = routed_scenario(directory.path(), port, "");
    let output = run(&scenario, &directory.path().join("runs"));
    // The only control message is refused on the only path: critical.
    assert_eq!(output.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let received = server.join().unwrap();
    assert_eq!(received.last().map(String::as_str), Some("QUIT"), "QUIT follows a 4xx at RCPT");

    let record = read_record(&only_run_directory(&directory.path().join("runs")));
    let reply = &record["attempts"][0]["reply"];
    assert_eq!(reply["code"], 451);
    assert_eq!(reply["enhanced"], "4.7.650");
    assert_eq!(reply["lines"].as_array().unwrap().len(), 2);
}

#[test]
fn unbindable_source_ip_sends_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let (port, _server) = scripted_server(vec![Some("220 unused\r\n")]);
    let scenario = routed_scenario(directory.path(), port, "");
    let text = std::fs::read_to_string(&scenario).unwrap().replace("\"127.0.0.1\"\nhelo", "\"192.0.2.10\"\nhelo");
    std::fs::write(&scenario, text).unwrap();
    let runs = directory.path().join("runs");
    let output = run(&scenario, &runs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("path p1: source_ip 192.0.2.10 cannot be bound on this host"), "stderr: {stderr}");
    assert!(!runs.exists(), "nothing is sent and no run directory is made");
}

#[test]
fn reply_naming_another_ip_is_flagged() {
    let directory = tempfile::tempdir().unwrap();
    let (port, server) = scripted_server(vec![
        Some("220 mx.customer-b.example.net ESMTP\r\n"),
        Some("250 mx.customer-b.example.net\r\n"),
        Some("421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=203.0.113.99\r\n"),
    ]);
    let scenario = routed_scenario(directory.path(), port, "");
    let output = run(&scenario, &directory.path().join("runs"));
    assert_eq!(output.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    server.join().unwrap();

    let record = read_record(&only_run_directory(&directory.path().join("runs")));
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["classification"]["provider"], "proofpoint");
    assert_eq!(attempt["classification"]["reason"], "ip-reputation");
    assert_eq!(attempt["classification"]["ip"], "203.0.113.99");
    assert_eq!(attempt["negative_replies"][0]["step"], "mail");
    let mismatch = attempt["ip_mismatch"].as_str().expect("the mismatch is recorded");
    assert!(mismatch.contains("203.0.113.99"), "{mismatch}");
    assert!(mismatch.contains("127.0.0.1"), "{mismatch}");
    let diagnosis: Vec<&str> =
        record["verdict"]["diagnosis"].as_array().unwrap().iter().map(|line| line.as_str().unwrap()).collect();
    assert!(diagnosis[0].starts_with("path p1: "), "{diagnosis:?}");
    assert!(diagnosis[0].contains("203.0.113.99"), "{diagnosis:?}");
    assert_eq!(record["seed_providers"]["customer-b.example.net"], "proofpoint");
}

#[test]
fn explain_json_prints_the_reading() {
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .args([
            "explain",
            "--json",
            "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. (S3113)",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let reading: Value = serde_json::from_slice(&output.stdout).expect("explain --json prints JSON");
    assert_eq!(reading["outcome"], "deferred");
    assert_eq!(reading["code"], 451);
    assert_eq!(reading["enhanced"], "4.7.650");
    assert_eq!(reading["provider"], "microsoft");
    assert_eq!(reading["reason"], "ip-reputation");
    assert_eq!(reading["ip"], "192.0.2.25");
    assert!(!reading["advice"].as_array().unwrap().is_empty());
    assert!(reading.get("lookup_url").is_some(), "lookup_url is present, null or not");
}

#[test]
fn explain_rejects_an_empty_reply() {
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary")).args(["explain", "  "]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the reply is empty"));
}

#[test]
fn inspect_json_lists_every_method() {
    let directory = tempfile::tempdir().unwrap();
    let copy = directory.path().join("copy.eml");
    std::fs::write(
        &copy,
        "Authentication-Results: mx1.customer-a.example.net;\r\n\tdkim=pass header.d=news.example.com header.s=rsa2026;\r\n\tspf=pass smtp.mailfrom=bounces@news.example.com;\r\n\tdmarc=pass header.from=news.example.com\r\n\
Received: from mta10.news.example.com ([192.0.2.10]) by mx1.customer-a.example.net with ESMTPS id ABC; Fri, 4 Dec 2026 12:00:01 +0000\r\n\
From: Control <control@news.example.com>\r\nTo: seed@customer-a.example.net\r\nSubject: Control\r\nDate: Fri, 4 Dec 2026 12:00:00 +0000\r\n\r\nBody\r\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .args(["inspect", "--json", "--no-dns"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let inspection: Value = serde_json::from_slice(&output.stdout).unwrap();
    let header = &inspection["authentication_headers"][0]["parsed"];
    assert_eq!(header["authserv_id"], "mx1.customer-a.example.net");
    let methods: Vec<(&str, &str)> = header["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| (result["method"].as_str().unwrap(), result["result"].as_str().unwrap()))
        .collect();
    assert_eq!(methods, vec![("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]);
    assert_eq!(header["results"][0]["props"][1]["property"], "s");
    assert_eq!(header["results"][0]["props"][1]["value"], "rsa2026");
    assert_eq!(inspection["received"][0]["client_ip"], "192.0.2.10");
}
