//! IMAP collection against a real Dovecot started on 127.0.0.1 for each test.
//!
//! These tests need the Debian package dovecot-imapd (`/usr/sbin/dovecot`)
//! and root, because Dovecot serves mail under a non-root UID. Without
//! either, each test fails with a message saying what to install, rather
//! than passing without checking anything. `.ci/run` installs the package.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailcanary::collect::imap::ImapReader;
use mailcanary::collect::{CollectError, Placement};
use mailcanary::message::{TOKEN_HEADER, TrackingToken};
use mailcanary::scenario::{ImapMailbox, ImapTls, SecretSource};
use serde_json::Value;

const DOVECOT: &str = "/usr/sbin/dovecot";

/// The UID and GID Dovecot serves mail as. Dovecot refuses UID 0 for mail
/// access, and the number need not exist in /etc/passwd.
const MAIL_UID: u32 = 64000;

const USER: &str = "seed@customer-a.example.net";
const PASSWORD: &str = "correct horse battery staple";

const ZONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/zones");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keys/demo-rsa.test-key.pem");

/// A Dovecot instance with its configuration, certificate and mail in a
/// temporary directory. Dropping it kills the server.
struct Dovecot {
    child: Child,
    directory: tempfile::TempDir,
    /// Plain IMAP and STARTTLS.
    imap_port: u16,
    /// Implicit TLS.
    imaps_port: u16,
    mail_root: PathBuf,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the calling test with what to install when Dovecot cannot run here.
fn require_dovecot() {
    assert!(
        Path::new(DOVECOT).exists(),
        "{DOVECOT} is missing: the IMAP tests need Dovecot; install it with `apt-get install -y dovecot-imapd`"
    );
    let euid = std::fs::metadata("/proc/self").expect("/proc/self exists").uid();
    assert_eq!(euid, 0, "the IMAP tests start Dovecot with a mail UID of its own, which needs root");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{server} did not listen on 127.0.0.1:{port} within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn give_to_mail_user(path: &Path) {
    let status = Command::new("chown").arg("-R").arg(format!("{MAIL_UID}:{MAIL_UID}")).arg(path).status().unwrap();
    assert!(status.success(), "chown {} failed", path.display());
}

impl Dovecot {
    /// Starts Dovecot with one user per address, each with `PASSWORD`, and
    /// mail under `<mail_root>/<address>/`.
    fn start(users: &[&str]) -> Dovecot {
        require_dovecot();
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        // Dovecot's login and mail processes run unprivileged and must reach
        // the sockets and the mail below this directory.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "mailcanary IMAP test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        std::fs::write(root.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(root.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(root.join("key.pem"), leaf_key.serialize_pem()).unwrap();

        let mail_root = root.join("mail");
        std::fs::create_dir_all(&mail_root).unwrap();
        let mut passwd = String::new();
        for user in users {
            passwd.push_str(&format!("{user}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::{}::\n", mail_root.display()));
            for folder in ["new", "cur", "tmp", ".Junk/new", ".Junk/cur", ".Junk/tmp"] {
                std::fs::create_dir_all(mail_root.join(user).join(folder)).unwrap();
            }
        }
        give_to_mail_user(&mail_root);
        std::fs::write(root.join("passwd"), passwd).unwrap();
        std::fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(root.join("wrong-password"), "not the password\n").unwrap();

        let imap_port = free_port();
        let imaps_port = free_port();
        let config = format!(
            r#"base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
mail_location = maildir:{mail}/%u
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \Junk
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"#,
            root = root.display(),
            mail = mail_root.display(),
        );
        let config_path = root.join("dovecot.conf");
        std::fs::write(&config_path, config).unwrap();

        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dovecot");
        let dovecot = Dovecot { child, directory, imap_port, imaps_port, mail_root };
        wait_for_port(imap_port, "Dovecot");
        wait_for_port(imaps_port, "Dovecot");
        dovecot
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// Writes a message carrying `token` into a folder's `new/`: `""` for
    /// INBOX, `".Junk"` for Junk.
    fn deliver(&self, user: &str, folder: &str, token: &TrackingToken) -> PathBuf {
        let directory = self.mail_root.join(user).join(folder).join("new");
        let name = format!("{}.M1P1.test", token.as_str());
        let message = format!(
            "From: Control <control@news.example.com>\r\nTo: {user}\r\nSubject: control\r\n\
             Message-ID: <{}>\r\n{TOKEN_HEADER}: {token}\r\n\r\nControl message.\r\n",
            token.message_id("news.example.com")
        );
        let path = directory.join(name);
        std::fs::write(&path, message).unwrap();
        give_to_mail_user(&path);
        path
    }

    fn mailbox(&self, tls: ImapTls) -> ImapMailbox {
        let port = if tls == ImapTls::Implicit { self.imaps_port } else { self.imap_port };
        ImapMailbox {
            host: "127.0.0.1".to_string(),
            port,
            tls,
            username: USER.to_string(),
            password: SecretSource::File(self.path("password")),
            ca_file: Some(self.path("ca.pem")),
            accept_invalid_certs: false,
            spam_folders: Vec::new(),
            authserv_id: None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("dovecot.log")).unwrap_or_default()
    }
}

fn tokens(list: &[&TrackingToken]) -> BTreeSet<String> {
    list.iter().map(|token| token.as_str().to_string()).collect()
}

/// Files of a Maildir folder, in `new/` and `cur/`.
fn files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
            files.extend(entries.map(|entry| entry.unwrap().path()));
        }
    }
    files
}

#[tokio::test]
async fn starttls_finds_inbox_copy_by_token() {
    let dovecot = Dovecot::start(&[USER]);
    let requested = TrackingToken::generate();
    let other = TrackingToken::generate();
    dovecot.deliver(USER, "", &requested);
    dovecot.deliver(USER, "", &other);

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Starttls), Vec::new());
    let found = reader.find(&tokens(&[&requested])).await.expect("collection succeeds");
    reader.logout().await;

    assert_eq!(found.len(), 1, "only the requested token is returned: {found:?}");
    let copy = &found[0];
    assert_eq!(copy.token, requested.as_str());
    assert_eq!(copy.folder, "INBOX");
    assert_eq!(copy.placement, Placement::Inbox);
    let prefix = format!("imap://127.0.0.1:{}/INBOX;UID=", dovecot.imap_port);
    assert!(copy.location.starts_with(&prefix), "{}", copy.location);
    let text = String::from_utf8_lossy(&copy.bytes);
    assert!(text.contains(&format!("{TOKEN_HEADER}: {requested}")), "{text}");
    assert!(text.contains("Control message."), "the whole message is fetched: {text}");
}

#[tokio::test]
async fn junk_special_use_folder_is_spam() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();
    dovecot.deliver(USER, ".Junk", &token);

    // No configured spam folder names, so only the \Junk attribute applies.
    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Starttls), Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("collection succeeds");
    reader.logout().await;

    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].folder, "Junk");
    assert_eq!(found[0].placement, Placement::Spam);
    assert!(found[0].location.contains("/Junk;UID="), "{}", found[0].location);
}

#[tokio::test]
async fn implicit_tls_finds_copy() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();
    dovecot.deliver(USER, "", &token);

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Implicit), Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("collection succeeds");
    reader.logout().await;

    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].location.starts_with(&format!("imap://127.0.0.1:{}/", dovecot.imaps_port)));
}

#[tokio::test]
async fn plain_imap_without_tls_finds_copy() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();
    dovecot.deliver(USER, "", &token);

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::None), Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("collection succeeds");
    reader.logout().await;

    assert_eq!(found.len(), 1, "{found:?}");
}

#[tokio::test]
async fn private_certificate_rejected_without_ca_file() {
    let dovecot = Dovecot::start(&[USER]);
    let mut mailbox = dovecot.mailbox(ImapTls::Implicit);
    mailbox.ca_file = None;

    let mut reader = ImapReader::new("seeds", mailbox, Vec::new());
    let error = reader.find(&tokens(&[&TrackingToken::generate()])).await.expect_err("the certificate is not trusted");

    assert!(matches!(error, CollectError::ImapTls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{}", dovecot.imaps_port)), "{message}");
    assert!(message.contains("seeds"), "{message}");
    assert!(message.contains("ca_file"), "{message}");
}

#[tokio::test]
async fn accept_invalid_certs_allows_private_certificate() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();
    dovecot.deliver(USER, "", &token);
    let mut mailbox = dovecot.mailbox(ImapTls::Starttls);
    mailbox.ca_file = None;
    mailbox.accept_invalid_certs = true;

    let mut reader = ImapReader::new("seeds", mailbox, Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("collection succeeds");
    reader.logout().await;

    assert_eq!(found.len(), 1, "{found:?}");
}

#[tokio::test]
async fn wrong_password_is_a_login_error() {
    let dovecot = Dovecot::start(&[USER]);
    let mut mailbox = dovecot.mailbox(ImapTls::Starttls);
    mailbox.password = SecretSource::File(dovecot.path("wrong-password"));

    let mut reader = ImapReader::new("seeds", mailbox, Vec::new());
    let error = reader.find(&tokens(&[&TrackingToken::generate()])).await.expect_err("login fails");

    assert!(matches!(error, CollectError::ImapLogin { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{}", dovecot.imap_port)), "{message}");
    assert!(message.contains("seeds"), "{message}");
    assert!(message.contains("password_file"), "the message says where the password comes from: {message}");
    assert!(!message.contains("not the password"), "the password is not in the message: {message}");
}

#[tokio::test]
async fn collection_leaves_seen_flag_unset() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();
    dovecot.deliver(USER, "", &token);

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Starttls), Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("collection succeeds");
    reader.logout().await;
    assert_eq!(found.len(), 1, "{found:?}");

    // Dovecot keeps Maildir flags in the file name, after `:2,`; S is \Seen.
    let files = files(&dovecot.mail_root.join(USER));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let flags = name.split_once(":2,").map(|(_, flags)| flags.to_string()).unwrap_or_default();
    assert!(!flags.contains('S'), "the copy was marked \\Seen: {name}");
}

#[tokio::test]
async fn connection_is_reused_across_polls() {
    let dovecot = Dovecot::start(&[USER]);
    let first = TrackingToken::generate();
    let second = TrackingToken::generate();
    dovecot.deliver(USER, "", &first);

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Starttls), Vec::new());
    let requested = tokens(&[&first, &second]);
    let found = reader.find(&requested).await.expect("first poll succeeds");
    assert_eq!(found.len(), 1, "{found:?}");

    // The second copy arrives between polls and is seen on the kept connection.
    dovecot.deliver(USER, ".Junk", &second);
    let found = reader.find(&tokens(&[&second])).await.expect("second poll succeeds");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].placement, Placement::Spam);
    assert_eq!(reader.connections(), 1, "both polls use one connection");
    reader.logout().await;

    // Dovecot logs each login; its log is written by another process, so the
    // check waits a little for the line to appear.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = dovecot.log();
    while !log.contains("Disconnected: Logged out") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = dovecot.log();
    }
    assert_eq!(log.matches("imap-login: Info: Login: user=<").count(), 1, "{log}");
    assert!(log.contains("Disconnected: Logged out"), "LOGOUT was sent: {log}");
}

#[tokio::test]
async fn dropped_connection_is_replaced_once() {
    let dovecot = Dovecot::start(&[USER]);
    let token = TrackingToken::generate();

    let mut reader = ImapReader::new("seeds", dovecot.mailbox(ImapTls::Starttls), Vec::new());
    let found = reader.find(&tokens(&[&token])).await.expect("first poll succeeds");
    assert!(found.is_empty());

    // doveadm kick closes the user's IMAP connections from the server side.
    let kick = Command::new("doveadm")
        .arg("-c")
        .arg(dovecot.path("dovecot.conf"))
        .args(["kick", USER])
        .output()
        .expect("run doveadm");
    assert!(kick.status.success(), "doveadm kick failed: {}", String::from_utf8_lossy(&kick.stderr));

    dovecot.deliver(USER, "", &token);
    let found = reader.find(&tokens(&[&token])).await.expect("the poll reconnects");
    reader.logout().await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(reader.connections(), 2);
}

/// Writes the simulator's policy file: it accepts the seed domain, reads the
/// demo zones and files DMARC failures into Junk.
fn write_policy(directory: &Path, port: u16) -> PathBuf {
    let policy = format!(
        r#"[simulator]
listen = "127.0.0.1:{port}"
hostname = "mx1.customer-a.example.net"
domains = ["customer-a.example.net"]
junk_on_dmarc_fail = true

[dns]
zones = ["{ZONES}/news.example.com.zone", "{ZONES}/customer-a.example.net.zone"]
"#
    );
    let path = directory.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path
}

fn write_scenario(directory: &Path, sim_port: u16, dovecot: &Dovecot) -> PathBuf {
    let scenario = format!(
        r#"[scenario]
name = "imap collection"

[sender]
from = "Control <control@news.example.com>"
mail_from = "bounces@news.example.com"

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "{KEY}"

[[path]]
name = "b-10"
source_ip = "127.0.0.10"
helo = "mta10.news.example.com"

[[seed]]
address = "{USER}"
mailbox = "seeds"

[mailbox.seeds]
imap = "imap://127.0.0.1:{imap_port}"
tls = "starttls"
username = "{USER}"
password_file = "{password}"
ca_file = "{ca}"
authserv_id = "mx1.customer-a.example.net"

[[stream]]
name = "control"
role = "control"
paths = ["b-10"]
subject = "Control {{run_id}}"
body = "Plain control message."

[delivery]
rate_per_minute = 0
routes = {{ "customer-a.example.net" = "127.0.0.1:{sim_port}" }}

[dns]
zones = ["{ZONES}/news.example.com.zone", "{ZONES}/customer-a.example.net.zone"]
"#,
        imap_port = dovecot.imap_port,
        password = dovecot.path("password").display(),
        ca = dovecot.path("ca.pem").display(),
    );
    let path = directory.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    path
}

/// Kills the simulator child when the test ends, passed or not.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_collects_copies_over_imap() {
    let dovecot = Dovecot::start(&[USER]);
    let directory = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let policy = write_policy(directory.path(), sim_port);

    // The simulator writes `<maildir>/<address>/`, which is where Dovecot
    // reads the user's mail. It runs as the mail UID so that Dovecot can
    // write its index files next to the messages.
    let simulator = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .arg("sim")
        .arg("--policy")
        .arg(&policy)
        .arg("--maildir")
        .arg(&dovecot.mail_root)
        .uid(MAIL_UID)
        .gid(MAIL_UID)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mailcanary sim");
    let _simulator = ChildGuard(simulator);
    wait_for_port(sim_port, "the simulator");

    let scenario = write_scenario(directory.path(), sim_port, &dovecot);
    let runs = directory.path().join("runs");
    let output = Command::new(env!("CARGO_BIN_EXE_mailcanary"))
        .arg("run")
        .arg("--runs-dir")
        .arg(&runs)
        .arg(&scenario)
        .output()
        .expect("run mailcanary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(PASSWORD), "the password is not logged: {stderr}");

    let run_directory = std::fs::read_dir(&runs).unwrap().next().expect("a run directory").unwrap().path();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run_directory.join("run.json")).unwrap()).unwrap();
    let copies = record["copies"].as_array().expect("copies");
    assert_eq!(copies.len(), 1, "one copy collected; stderr: {stderr}\nrecord: {record:#}");
    let copy = &copies[0];
    assert_eq!(copy["mailbox"], "seeds");
    assert_eq!(copy["folder"], "INBOX");
    assert_eq!(copy["placement"], "inbox");
    let location = copy["location"].as_str().unwrap();
    assert!(location.starts_with(&format!("imap://127.0.0.1:{}/INBOX;UID=", dovecot.imap_port)), "{location}");

    let verdicts = &copy["verdicts"];
    assert_eq!(verdicts["receiver"]["header"]["authserv_id"], "mx1.customer-a.example.net");
    for method in ["spf", "dkim", "dmarc"] {
        let results: Vec<&Value> =
            verdicts["receiver"]["methods"].as_array().unwrap().iter().filter(|m| m["method"] == method).collect();
        assert!(!results.is_empty(), "the receiver reported {method}: {verdicts:#}");
        assert!(results.iter().all(|m| m["result"] == "pass"), "receiver {method} passes: {verdicts:#}");
    }

    let run_json = std::fs::read_to_string(run_directory.join("run.json")).unwrap();
    assert!(!run_json.contains(PASSWORD), "the password is not in run.json");
    assert_eq!(output.status.code(), Some(0), "healthy run; stderr: {stderr}");
}
