//! Lookups through in-process servers on loopback; nothing leaves the
//! machine.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use mail_auth::SpfResult;
use mail_auth::spf::verify::SpfParameters;

use super::*;

const SENDER_ZONE: &str = r#"$ORIGIN sender.test.
$TTL 300
@        IN SOA ns1.sender.test. hostmaster.sender.test. ( 1 3600 600 86400 60 )
@        IN NS  ns1.sender.test.
ns1      IN A   127.0.0.1
@        IN MX  20 mx2.sender.test.
@        IN MX  10 mx1.sender.test.
@        IN MX  20 mx3.sender.test.
mx1      IN A   127.0.0.21
mx1      IN AAAA ::1
mx2      IN A   127.0.0.22
mx3      IN A   127.0.0.23
mta      IN A   127.0.0.10
@        IN TXT "v=spf1 ip4:127.0.0.10 -all"
s1._domainkey IN TXT "v=DKIM1; k=ed25519; " "p=IAfyTIAdn9RmUhAMRMv9AwwZO0FYlxL8/MpdFlMXpgY="
_dmarc   IN TXT "v=DMARC1; p=reject"
nullmx   IN MX  0 .
implicit IN A   127.0.0.30
"#;

const OTHER_ZONE: &str = r#"$ORIGIN other.test.
$TTL 300
@        IN SOA ns1.other.test. hostmaster.other.test. ( 1 3600 600 86400 60 )
@        IN NS  ns1.other.test.
@        IN MX  5 mx.other.test.
mx       IN A   127.0.0.40
"#;

fn write_zone(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("zone file written");
    path
}

async fn start_with(zones: Vec<PathBuf>, nameservers: Vec<std::net::SocketAddr>) -> Dns {
    Dns::start(&DnsSettings { nameservers, zones }).await.expect("DNS starts")
}

async fn sender_dns(dir: &Path) -> Dns {
    start_with(vec![write_zone(dir, "sender.test.zone", SENDER_ZONE)], Vec::new()).await
}

fn txt_text(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match &record.data {
            hickory_proto::rr::RData::TXT(txt) => {
                Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn local_server_listens_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let address = dns.local_server().expect("a local server");
    assert!(address.ip().is_loopback());
    assert_ne!(address.port(), 0);
}

#[tokio::test]
async fn mx_records_are_sorted_by_preference() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let records = dns.mx("sender.test").await.unwrap();
    let preferences: Vec<u16> = records.iter().map(|mx| mx.preference).collect();
    assert_eq!(preferences, [10, 20, 20]);
    assert_eq!(records[0].exchange, "mx1.sender.test");
}

#[tokio::test]
async fn addresses_include_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let addresses = dns.addresses("mx1.sender.test").await.unwrap();
    assert_eq!(addresses, [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)), "::1".parse::<IpAddr>().unwrap()]);
}

#[tokio::test]
async fn txt_records_reach_the_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;
    let resolver = dns.authenticator();

    for (name, expected) in [
        ("sender.test.", "v=spf1 ip4:127.0.0.10 -all"),
        ("s1._domainkey.sender.test.", "v=DKIM1; k=ed25519; p=IAfyTIAdn9RmUhAMRMv9AwwZO0FYlxL8/MpdFlMXpgY="),
        ("_dmarc.sender.test.", "v=DMARC1; p=reject"),
    ] {
        let lookup = resolver.resolver().txt_lookup(name).await.unwrap();
        let texts = txt_text(lookup.answers());
        assert_eq!(texts, [expected.to_owned()], "TXT of {name}");
    }
}

#[tokio::test]
async fn name_outside_zones_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let error = dns.mx("nowhere.example.org").await.unwrap_err();
    assert!(matches!(&error, DnsError::NotFound { name, .. } if name == "nowhere.example.org"), "{error}");
}

#[tokio::test]
async fn missing_name_inside_zone_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let error = dns.addresses("absent.sender.test").await.unwrap_err();
    assert!(matches!(error, DnsError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn name_without_mx_returns_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    assert_eq!(dns.mx("implicit.sender.test").await.unwrap(), []);
}

#[tokio::test]
async fn delivery_targets_follow_mx_order() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let targets = dns.delivery_targets("sender.test").await.unwrap();
    let hosts: Vec<&str> = targets.iter().map(|target| target.host.as_str()).collect();
    assert_eq!(hosts, ["mx1.sender.test", "mx2.sender.test", "mx3.sender.test"]);
    assert_eq!(targets[1].preference, Some(20));
    assert_eq!(targets[1].addresses, [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 22))]);
}

#[tokio::test]
async fn domain_without_mx_is_its_own_target() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let targets = dns.delivery_targets("implicit.sender.test").await.unwrap();
    assert_eq!(
        targets,
        [DeliveryTarget {
            host: "implicit.sender.test".to_owned(),
            preference: None,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 30))],
        }]
    );
}

#[tokio::test]
async fn null_mx_accepts_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;

    let records = dns.mx("nullmx.sender.test").await.unwrap();
    assert!(records[0].is_null());
    let error = dns.delivery_targets("nullmx.sender.test").await.unwrap_err();
    assert!(matches!(&error, DnsError::NullMx { domain } if domain == "nullmx.sender.test"), "{error}");
    assert!(error.to_string().contains("accepts no mail"), "{error}");
}

#[tokio::test]
async fn invalid_zone_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "$ORIGIN bad.test.\n$TTL 300\n@ IN SOA ns1.bad.test. h.bad.test. ( 1 3600 600 86400 60 )\nmx IN A 127.0.0.1\nwww IN A not-an-address\n";
    let path = write_zone(dir.path(), "bad.test.zone", text);

    let error = Dns::start(&DnsSettings { nameservers: Vec::new(), zones: vec![path.clone()] }).await.unwrap_err();
    assert!(matches!(&error, DnsError::InvalidZone { line: Some(5), .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[tokio::test]
async fn txt_split_in_parentheses_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let text = "$ORIGIN split.test.\n$TTL 300\n@ IN SOA ns1.split.test. h.split.test. ( 1 3600 600 86400 60 )\n@ IN TXT ( \"v=spf1 \"\n  \"-all\" )\n";
    let path = write_zone(dir.path(), "split.test.zone", text);

    let error = Dns::start(&DnsSettings { nameservers: Vec::new(), zones: vec![path] }).await.unwrap_err();
    assert!(error.to_string().contains("on one line"), "{error}");
}

#[tokio::test]
async fn zone_without_soa_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_zone(dir.path(), "nosoa.test.zone", "$ORIGIN nosoa.test.\n$TTL 300\nmx IN A 127.0.0.1\n");

    let error = Dns::start(&DnsSettings { nameservers: Vec::new(), zones: vec![path] }).await.unwrap_err();
    assert!(matches!(error, DnsError::ZoneSetup { .. }), "{error}");
}

#[tokio::test]
async fn authenticator_verifies_spf_against_zone() {
    let dir = tempfile::tempdir().unwrap();
    let dns = sender_dns(dir.path()).await;
    let authenticator = dns.authenticator();

    let allowed = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
    let output = authenticator
        .verify_spf(SpfParameters::verify_mail_from(
            allowed,
            "mta.sender.test",
            "mx.receiver.test",
            "bounces@sender.test",
        ))
        .await;
    assert_eq!(output.result(), SpfResult::Pass);

    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99));
    let output = authenticator
        .verify_spf(SpfParameters::verify_mail_from(
            other,
            "mta.sender.test",
            "mx.receiver.test",
            "bounces@sender.test",
        ))
        .await;
    assert_eq!(output.result(), SpfResult::Fail);
}

#[tokio::test]
async fn names_outside_zones_are_forwarded_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_with(vec![write_zone(dir.path(), "other.test.zone", OTHER_ZONE)], Vec::new()).await;
    let upstream_address = upstream.local_server().unwrap();
    let dns = start_with(vec![write_zone(dir.path(), "sender.test.zone", SENDER_ZONE)], vec![upstream_address]).await;

    let local = dns.mx("sender.test").await.unwrap();
    assert_eq!(local[0].exchange, "mx1.sender.test");
    let forwarded = dns.delivery_targets("other.test").await.unwrap();
    assert_eq!(forwarded[0].host, "mx.other.test");
    assert_eq!(forwarded[0].addresses, [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 40))]);
    let missing = dns.addresses("absent.other.test").await.unwrap_err();
    assert!(matches!(missing, DnsError::NotFound { .. }), "{missing}");
}

#[tokio::test]
async fn nameservers_without_zones_are_asked_directly() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_with(vec![write_zone(dir.path(), "other.test.zone", OTHER_ZONE)], Vec::new()).await;
    let dns = start_with(Vec::new(), vec![upstream.local_server().unwrap()]).await;

    assert_eq!(dns.local_server(), None);
    assert_eq!(dns.mx("other.test").await.unwrap()[0].exchange, "mx.other.test");
}

// Takes about 15 seconds: hickory-resolver's default 5-second timeout, with
// its retries, before the lookup gives up.
#[tokio::test]
async fn stopped_upstream_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_with(vec![write_zone(dir.path(), "other.test.zone", OTHER_ZONE)], Vec::new()).await;
    let address = upstream.local_server().unwrap();
    upstream.shutdown().await;

    let dns = start_with(Vec::new(), vec![address]).await;
    let error = dns.mx("other.test").await.unwrap_err();
    assert!(matches!(error, DnsError::Timeout { .. }), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn demo_zones_load() {
    let zones_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/zones");
    let dns = start_with(
        vec![zones_dir.join("news.example.com.zone"), zones_dir.join("customer-a.example.net.zone")],
        Vec::new(),
    )
    .await;

    let targets = dns.delivery_targets("customer-a.example.net").await.unwrap();
    assert_eq!(targets[0].host, "mx1.customer-a.example.net");
    assert_eq!(targets[0].addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let dkim = dns.authenticator().resolver().txt_lookup("rsa2026._domainkey.news.example.com.").await.unwrap();
    let joined: String = txt_text(dkim.answers()).concat();
    assert!(joined.starts_with("v=DKIM1; k=rsa; p=MIIB"), "{joined}");
}
