//! Serde types that mirror the scenario TOML one to one. Every table rejects
//! unknown keys, and values that need checking keep their span so that
//! validation can point at `file:line:column`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::dns::DnsToml;
use crate::sim::policy::SimulatorToml;

type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioToml {
    pub scenario: ScenarioTable,
    pub sender: SenderTable,
    #[serde(default)]
    pub dkim: Vec<DkimTable>,
    #[serde(default)]
    pub path: Vec<PathTable>,
    #[serde(default)]
    pub seed: Vec<SeedTable>,
    #[serde(default)]
    pub mailbox: BTreeMap<Text, MailboxTable>,
    #[serde(default)]
    pub stream: Vec<StreamTable>,
    #[serde(default)]
    pub delivery: DeliveryTable,
    pub dns: Option<DnsToml>,
    pub simulator: Option<Spanned<SimulatorToml>>,
    #[serde(default)]
    pub preflight: PreflightTable,
    #[serde(default)]
    pub collect: CollectTable,
    #[serde(default)]
    pub gate: GateTable,
    #[serde(default)]
    pub context: ContextTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightTable {
    #[serde(default)]
    pub dnsbl: Vec<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectTable {
    pub timeout: Option<Text>,
    pub poll_interval: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateTable {
    pub require_auth: Option<Vec<Text>>,
    pub require_inbox: Option<bool>,
    pub max_control_deferral_rate: Option<Spanned<f64>>,
    pub max_bulk_deferral_rate: Option<Spanned<f64>>,
    pub critical_min_seeds: Option<Spanned<i64>>,
    pub allow_cleared_deferrals: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTable {
    pub name: Text,
    pub description: Option<String>,
    pub max_messages: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderTable {
    pub from: Text,
    pub mail_from: Text,
    pub reply_to: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimTable {
    pub domain: Text,
    pub selector: Text,
    pub private_key: Text,
    pub headers: Option<Vec<Text>>,
    pub expiration: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTable {
    pub name: Text,
    pub pool: Option<Text>,
    pub source_ip: Option<Text>,
    pub helo: Option<Text>,
    pub relay: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<Text, Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTable {
    pub address: Text,
    pub mailbox: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxTable {
    pub maildir: Option<Text>,
    pub imap: Option<Text>,
    pub username: Option<Text>,
    /// Present only so that a password written into the file gets a precise
    /// error instead of a generic unknown-key one.
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Text>,
    pub password_file: Option<Text>,
    pub tls: Option<Text>,
    pub ca_file: Option<Text>,
    pub accept_invalid_certs: Option<bool>,
    #[serde(default)]
    pub spam_folders: Vec<Text>,
    pub authserv_id: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTable {
    pub name: Text,
    pub role: Text,
    pub paths: Spanned<Vec<Text>>,
    pub seeds: Option<Vec<Text>>,
    pub count: Option<Spanned<i64>>,
    pub from: Option<Text>,
    pub subject: Option<Text>,
    pub body: Option<Text>,
    pub message: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<Text, Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTable {
    pub rate_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    pub retry: Vec<Text>,
    pub starttls: Option<Text>,
    pub verify_certificates: Option<bool>,
    pub ca_file: Option<Text>,
    #[serde(default)]
    pub routes: BTreeMap<Text, Text>,
    #[serde(default)]
    pub timeouts: TimeoutsTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsTable {
    pub connect: Option<Text>,
    pub greeting: Option<Text>,
    pub command: Option<Text>,
    pub data: Option<Text>,
    pub end_of_data: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextTable {
    #[serde(default)]
    pub remediation: Vec<String>,
    pub current_rate_limit: Option<String>,
    pub contact: Option<String>,
    pub ticket: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}
