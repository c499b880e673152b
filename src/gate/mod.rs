//! The gate: tallies of a run per stream, path, pool, provider and seed, the
//! checkpoint (healthy, warning, critical) with the criteria behind it, and
//! the diagnosis a postmaster reads. It reads only the run record, so `gate`
//! re-evaluates a saved run, also with another scenario's thresholds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::collect::Placement;
use crate::exit::ExitStatus;
use crate::run::record::{AttemptRecord, CopyRecord, MessageRecord, RecordIndex, RunRecord};
use crate::scenario::{Gate, Role};
use crate::smtp::record::{Failure, Outcome};

/// The gate's result for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checkpoint {
    /// Resume gradually.
    Healthy,
    /// Throttle and segment.
    Warning,
    /// Hold volume and escalate.
    Critical,
}

impl Checkpoint {
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Checkpoint::Healthy => ExitStatus::Healthy,
            Checkpoint::Warning => ExitStatus::Warning,
            Checkpoint::Critical => ExitStatus::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Checkpoint::Healthy => "healthy",
            Checkpoint::Warning => "warning",
            Checkpoint::Critical => "critical",
        }
    }

    /// Returns the action the checkpoint calls for.
    pub fn action(self) -> &'static str {
        match self {
            Checkpoint::Healthy => "resume gradually",
            Checkpoint::Warning => "throttle and segment",
            Checkpoint::Critical => "hold volume and escalate",
        }
    }
}

/// One gate criterion, as a CI system shows a test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub passed: bool,
    /// False when nothing could be checked (no copy was found, say); such a
    /// criterion counts as passed and is shown as not evaluated.
    #[serde(default = "evaluated_by_default")]
    pub evaluated: bool,
    /// The checkpoint this criterion forces when it fails.
    pub severity: Checkpoint,
    pub detail: String,
}

fn evaluated_by_default() -> bool {
    true
}

fn criterion(name: impl Into<String>, passed: bool, severity: Checkpoint, detail: impl Into<String>) -> Criterion {
    Criterion { name: name.into(), passed, evaluated: true, severity, detail: detail.into() }
}

/// Counts for one group of messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub messages: u32,
    pub attempts: u32,
    pub accepted: u32,
    pub deferred: u32,
    pub rejected: u32,
    pub failed: u32,
    pub not_sent: u32,
    pub cleared_after_retry: u32,
    pub inbox: u32,
    pub spam: u32,
    pub missing: u32,
    /// Copies whose required methods all passed at the receiver and on our check.
    pub authenticated: u32,
    pub authentication_failed: u32,
}

impl Tally {
    fn refused(&self) -> u32 {
        self.deferred + self.rejected + self.failed
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallies {
    pub by_stream: BTreeMap<String, Tally>,
    pub by_path: BTreeMap<String, Tally>,
    pub by_pool: BTreeMap<String, Tally>,
    pub by_provider: BTreeMap<String, Tally>,
    pub by_seed: BTreeMap<String, Tally>,
    /// Control and bulk per path, the comparison the diagnosis rests on.
    pub by_role_and_path: BTreeMap<String, Tally>,
}

/// The evaluated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub checkpoint: Checkpoint,
    /// False when the run cannot be judged: it was interrupted,
    /// messages were never sent, a path could not send from its own address,
    /// or a mailbox could not be read. The exit code is then 1.
    #[serde(default = "evaluated_by_default")]
    pub complete: bool,
    /// The reasons the run is not complete.
    #[serde(default)]
    pub incomplete: Vec<String>,
    pub criteria: Vec<Criterion>,
    /// Sentences in the field's words, most important first.
    pub diagnosis: Vec<String>,
    pub tallies: Tallies,
    /// The thresholds this verdict was computed with.
    pub gate: Gate,
}

impl Verdict {
    /// Returns the exit status of `run` and `gate`: the checkpoint's, or 1
    /// when the run cannot be evaluated.
    pub fn exit_status(&self) -> ExitStatus {
        if self.complete { self.checkpoint.exit_status() } else { ExitStatus::RunFailed }
    }
}

/// Everything known about one planned message.
struct View<'a> {
    message: &'a MessageRecord,
    provider: String,
    copy: Option<&'a CopyRecord>,
    last_attempt: Option<&'a AttemptRecord>,
}

impl View<'_> {
    /// Deferred, rejected, or failed at the receiver's end (refused
    /// connection, timeout, drop, TLS): what the receiver did to the mail.
    fn refused(&self) -> bool {
        match self.message.outcome {
            Some(Outcome::Deferred | Outcome::Rejected) => true,
            Some(Outcome::Failed) => self.local_failure().is_none(),
            Some(Outcome::Accepted) | None => false,
        }
    }

    /// Returns the reason the message reveals nothing about the receiver: it was never sent,
    /// or its attempt failed on our side (the source IP could not be bound,
    /// the seed domain could not be resolved, a local I/O error).
    fn local_failure(&self) -> Option<String> {
        if self.message.outcome.is_none() {
            return Some(match &self.message.error {
                Some(error) => format!("message {} was never sent: {error}", self.message.sequence),
                None => format!("message {} was never sent", self.message.sequence),
            });
        }
        let attempt = self.last_attempt?;
        match &attempt.failure {
            Some(failure @ (Failure::Bind { .. } | Failure::Dns { .. } | Failure::Io { .. })) => {
                Some(format!("path {} could not send to {}: {failure}", attempt.path, attempt.seed))
            }
            _ => None,
        }
    }

    fn accepted(&self) -> bool {
        self.message.outcome == Some(Outcome::Accepted)
    }
}

/// Evaluates a run record against `gate`.
pub fn evaluate(record: &RunRecord, gate: &Gate) -> Verdict {
    let views = views(record);
    let tallies = tally(&views, gate);
    let mut criteria = Vec::new();
    let mut diagnosis = Vec::new();

    let control: Vec<&View> = views.iter().filter(|view| view.message.role == Role::Control).collect();
    let bulk: Vec<&View> = views.iter().filter(|view| view.message.role == Role::Bulk).collect();

    check_preflight(record, &mut criteria, &mut diagnosis);
    check_control_delivery(record, gate, &control, &mut criteria, &mut diagnosis);
    check_retries(gate, &views, &mut criteria, &mut diagnosis);
    check_placement(record, gate, &control, &mut criteria, &mut diagnosis);
    check_authentication(gate, &control, &mut criteria, &mut diagnosis);
    check_bulk(gate, &control, &bulk, &mut criteria, &mut diagnosis);
    diagnose_providers(&tallies, &mut diagnosis);
    diagnose_named_ips(record, &mut diagnosis);

    let checkpoint = criteria
        .iter()
        .filter(|criterion| !criterion.passed)
        .map(|criterion| criterion.severity)
        .max()
        .unwrap_or(Checkpoint::Healthy);

    let mut incomplete = Vec::new();
    if record.interrupted {
        incomplete.push("the run was interrupted before every message reached a final outcome".to_string());
    }
    let mut local: Vec<String> = views.iter().filter_map(View::local_failure).collect();
    local.dedup();
    incomplete.extend(local);
    for (mailbox, error) in &record.collection_errors {
        incomplete.push(format!("mailbox {mailbox} could not be read: {error}"));
    }
    for reason in incomplete.iter().rev() {
        diagnosis.insert(0, format!("not a verdict on the receiver: {reason}; fix this and run again"));
    }

    if checkpoint == Checkpoint::Healthy && incomplete.is_empty() {
        let clean = control.iter().all(|view| view.accepted() && !view.message.cleared_after_retry)
            && criteria.iter().all(|criterion| criterion.passed && criterion.evaluated);
        let sentence = if clean {
            "every control message was accepted without a new deferral, found in the inbox and authenticated: resume volume gradually, watching the same replies"
        } else {
            "healthy within this gate's thresholds, which tolerate what the criteria below show: resume gradually and watch those replies"
        };
        diagnosis.insert(0, sentence.to_string());
    }
    Verdict {
        checkpoint,
        complete: incomplete.is_empty(),
        incomplete,
        criteria,
        diagnosis,
        tallies,
        gate: gate.clone(),
    }
}

fn views(record: &RunRecord) -> Vec<View<'_>> {
    let index = RecordIndex::new(record);
    record
        .messages
        .iter()
        .map(|message| {
            let domain = crate::scenario::address::domain_of(&message.seed).to_ascii_lowercase();
            let provider = record.seed_providers.get(&domain).cloned().unwrap_or_else(|| "other".to_string());
            View { message, provider, copy: index.copy(message.sequence), last_attempt: index.last_attempt(message) }
        })
        .collect()
}

/// True when every method `gate` requires passed, at the receiver and on
/// our own check; `None` when the copy carries no verdicts to judge.
fn authenticated(copy: &CopyRecord, gate: &Gate) -> Option<bool> {
    let verdicts = copy.verdicts.as_ref()?;
    Some(gate.require_auth.iter().all(|method| {
        verdicts.receiver_result(method.as_str()) == Some("pass")
            && verdicts.own_result(method.as_str()) == Some("pass")
    }))
}

fn tally(views: &[View], gate: &Gate) -> Tallies {
    let mut tallies = Tallies::default();
    for view in views {
        let message = view.message;
        let keys = [
            (&mut tallies.by_stream, message.stream.clone()),
            (&mut tallies.by_path, message.path.clone()),
            (&mut tallies.by_pool, message.pool.clone()),
            (&mut tallies.by_provider, view.provider.clone()),
            (&mut tallies.by_seed, message.seed.clone()),
            (&mut tallies.by_role_and_path, format!("{} {}", message.role.as_str(), message.path)),
        ];
        for (map, key) in keys {
            let tally = map.entry(key).or_default();
            tally.messages += 1;
            tally.attempts += message.attempts.len() as u32;
            match message.outcome {
                Some(Outcome::Accepted) => tally.accepted += 1,
                Some(Outcome::Deferred) => tally.deferred += 1,
                Some(Outcome::Rejected) => tally.rejected += 1,
                Some(Outcome::Failed) => tally.failed += 1,
                None => tally.not_sent += 1,
            }
            if message.cleared_after_retry {
                tally.cleared_after_retry += 1;
            }
            match message.placement {
                Some(Placement::Inbox) => tally.inbox += 1,
                Some(Placement::Spam) => tally.spam += 1,
                Some(Placement::Missing) => tally.missing += 1,
                None => {}
            }
            match view.copy.and_then(|copy| authenticated(copy, gate)) {
                Some(true) => tally.authenticated += 1,
                Some(false) => tally.authentication_failed += 1,
                None => {}
            }
        }
    }
    tallies
}

fn describe_refusal(view: &View) -> String {
    let reply = view
        .last_attempt
        .and_then(|attempt| attempt.reply.as_ref())
        .map(|reply| reply.lines.join(" "))
        .or_else(|| {
            view.last_attempt.and_then(|attempt| attempt.failure.as_ref()).map(|failure| format!("no reply: {failure}"))
        })
        .unwrap_or_else(|| "no reply".into());
    format!("{} -> {}: {}", view.message.path, view.message.seed, reply)
}

fn check_control_delivery(
    record: &RunRecord,
    gate: &Gate,
    control: &[&View],
    criteria: &mut Vec<Criterion>,
    diagnosis: &mut Vec<String>,
) {
    if control.is_empty() {
        criteria.push(criterion(
            "control messages sent",
            false,
            Checkpoint::Warning,
            "the scenario has no control stream, so nothing separates reputation from content",
        ));
        return;
    }
    let refused: Vec<&&View> = control.iter().filter(|view| view.refused()).collect();
    let rate = refused.len() as f64 / control.len() as f64;

    // Control refused by a provider across at least `critical_min_seeds`
    // seeds (or all its seeds, when it has fewer) on every path that sent
    // to it: the range or the pool as a whole is judged, not one IP.
    let mut broad: Vec<String> = Vec::new();
    let providers: BTreeSet<&str> = control.iter().map(|view| view.provider.as_str()).collect();
    for provider in providers {
        let to_provider: Vec<&&View> = control.iter().filter(|view| view.provider == provider).collect();
        let seeds: BTreeSet<&str> = to_provider.iter().map(|view| view.message.seed.as_str()).collect();
        let refused_seeds: BTreeSet<&str> = seeds
            .iter()
            .copied()
            .filter(|seed| to_provider.iter().filter(|view| view.message.seed == *seed).all(|view| view.refused()))
            .collect();
        let paths: BTreeSet<&str> = to_provider.iter().map(|view| view.message.path.as_str()).collect();
        let every_path_refused = paths
            .iter()
            .all(|path| to_provider.iter().filter(|view| view.message.path == *path).any(|view| view.refused()));
        let needed = (gate.critical_min_seeds as usize).min(seeds.len());
        if refused_seeds.len() >= needed && !refused_seeds.is_empty() && every_path_refused {
            broad.push(format!("{provider} ({} of {} seeds, every path)", refused_seeds.len(), seeds.len()));
        }
    }

    let mut detail = format!("{} of {} control messages accepted", control.len() - refused.len(), control.len());
    const LISTED: usize = 20;
    for view in refused.iter().take(LISTED) {
        let _ = write!(detail, "; {}", describe_refusal(view));
    }
    if refused.len() > LISTED {
        let _ = write!(detail, "; and {} more", refused.len() - LISTED);
    }
    if !broad.is_empty() {
        criteria.push(criterion("control accepted", false, Checkpoint::Critical, detail));
        let reasons = refusal_reasons(&refused);
        let reading = if preflight_auth_failures(record).next().is_some() {
            "the sender's own records are broken (see the preflight findings), so this is an authentication problem to fix first, not reputation".to_string()
        } else if reasons.contains("authentication") {
            "the receiver names an authentication problem, so fix the record it names first".to_string()
        } else if reasons.iter().all(|reason| matches!(reason.as_str(), "ip-reputation" | "blocklist" | "rate-limit")) {
            "IP or range reputation, not content".to_string()
        } else {
            format!("the receiver's reasons: {}", reasons.iter().cloned().collect::<Vec<_>>().join(", "))
        };
        diagnosis.push(format!(
            "control deferred too, across {}: {reading}; hold volume and take the evidence packet to the receiver",
            broad.join(", ")
        ));
        diagnosis.extend(readings_by_reason(record, &refused));
    } else if rate > gate.max_control_deferral_rate {
        criteria.push(criterion("control accepted", false, Checkpoint::Warning, detail));
        let refused_paths: BTreeSet<&str> = refused.iter().map(|view| view.message.path.as_str()).collect();
        let clean_paths: BTreeSet<&str> = control
            .iter()
            .map(|view| view.message.path.as_str())
            .filter(|path| !refused_paths.contains(path))
            .collect();
        let refused_list = refused_paths.iter().map(|path| describe_path(record, path)).collect::<Vec<_>>().join(", ");
        if clean_paths.is_empty() {
            diagnosis.push(format!("part of the control mail is refused on {refused_list}, at some seeds only"));
        } else {
            diagnosis.push(format!(
                "only part of the range or pool is refused: control refused on {refused_list} while {} accepted it, so the problem is specific to those paths",
                clean_paths.iter().map(|path| describe_path(record, path)).collect::<Vec<_>>().join(", ")
            ));
        }
        diagnosis.extend(readings_by_reason(record, &refused));
    } else {
        criteria.push(criterion("control accepted", true, Checkpoint::Critical, detail));
    }
}

/// The preflight checks whose failure breaks authentication.
const AUTH_CHECKS: [&str; 4] = ["spf", "spf-record", "dkim", "dmarc"];

fn preflight_auth_failures(record: &RunRecord) -> impl Iterator<Item = &crate::preflight::Finding> {
    record
        .preflight
        .iter()
        .flat_map(|preflight| preflight.failures())
        .filter(|finding| AUTH_CHECKS.contains(&finding.check.as_str()))
}

/// Turns the preflight into two criteria. Broken authentication records
/// are critical, because a control test proves nothing while they are
/// broken. Sending identity problems (PTR, HELO, blocklists) are a warning.
fn check_preflight(record: &RunRecord, criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    let Some(preflight) = &record.preflight else { return };
    let describe = |finding: &crate::preflight::Finding| match &finding.fix {
        Some(fix) => format!("{} {}: {}; fix: {fix}", finding.subject, finding.check, finding.detail),
        None => format!("{} {}: {}", finding.subject, finding.check, finding.detail),
    };

    let auth: Vec<String> = preflight_auth_failures(record).map(describe).collect();
    for line in &auth {
        diagnosis.push(format!("authentication problem to fix first: {line}"));
    }
    let detail = if auth.is_empty() { "SPF, DKIM and DMARC records check out".to_string() } else { auth.join("; ") };
    criteria.push(criterion("sender authentication records", auth.is_empty(), Checkpoint::Critical, detail));

    let identity: Vec<String> =
        preflight.failures().filter(|finding| !AUTH_CHECKS.contains(&finding.check.as_str())).map(describe).collect();
    for line in &identity {
        diagnosis.push(format!("sending identity: {line}"));
    }
    let detail = if identity.is_empty() {
        "PTR, HELO, MX and blocklist checks found no failure".to_string()
    } else {
        identity.join("; ")
    };
    criteria.push(criterion("sending identity", identity.is_empty(), Checkpoint::Warning, detail));
}

/// Writes one sentence per kind of refusal, naming the paths and what to
/// do, in the field's terms.
fn readings_by_reason(record: &RunRecord, refused: &[&&View]) -> Vec<String> {
    let mut groups: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for view in refused {
        let classification = view.last_attempt.and_then(|attempt| attempt.classification.as_ref());
        let key = match (classification, view.last_attempt.and_then(|attempt| attempt.failure.as_ref())) {
            (Some(classification), _) => classification.reason.as_str().to_string(),
            (None, Some(Failure::ConnectionDropped { .. })) => "dropped".to_string(),
            (None, Some(Failure::TimedOut { .. })) => "timed-out".to_string(),
            (None, _) => "no-reply".to_string(),
        };
        let entry = groups.entry(key).or_default();
        entry.0.insert(describe_path(record, &view.message.path));
        if let Some(url) = classification.and_then(|classification| classification.lookup_url.clone()) {
            entry.1.insert(url);
        }
    }
    groups
        .into_iter()
        .map(|(reason, (paths, urls))| {
            let paths = paths.into_iter().collect::<Vec<_>>().join(", ");
            let lookup = if urls.is_empty() { String::new() } else { format!(" (lookup: {})", urls.into_iter().collect::<Vec<_>>().join(", ")) };
            let advice = match reason.as_str() {
                "ip-reputation" => "the receiver judges the reputation of these IPs: move volume off them, throttle, and ask for review with this evidence",
                "blocklist" => "these IPs are on a blocklist the receiver uses: request delisting at the named list before sending from them",
                "rate-limit" => "the receiver rate-limits these IPs: slow down per IP and spread volume",
                "authentication" => "the receiver refuses on authentication: fix the SPF, DKIM or DMARC record it names first",
                "content" => "the receiver refuses the content: change the message, not the IP",
                "policy" => "a policy of the receiver refuses the mail (not reputation): check the receiver's restriction or our routing",
                "recipient" => "the receiver refuses the recipient: fix the seed address or the route to it; this says nothing about reputation",
                "greylist" => "greylisted: expected to clear on a later retry",
                "tls" => "TLS failed: check the certificate and protocol settings on both sides",
                "dns" => "the receiver could not resolve our names: check PTR, HELO and MAIL FROM records",
                "capacity" => "the receiver was busy: retry later; this says nothing about reputation",
                "protocol" => "the SMTP dialogue failed: read the transcript",
                "dropped" => "the receiver dropped the connection without a reply: capacity or a silent block; read the transcript",
                "timed-out" => "the receiver did not answer in time: capacity or a silent block",
                _ => "the reply does not say why: read the transcript",
            };
            format!("{reason} on {paths}{lookup}: {advice}")
        })
        .collect()
}

fn refusal_reasons(refused: &[&&View]) -> BTreeSet<String> {
    refused
        .iter()
        .filter_map(|view| view.last_attempt)
        .filter_map(|attempt| attempt.classification.as_ref())
        .map(|classification| classification.reason.as_str().to_string())
        .collect()
}

fn describe_path(record: &RunRecord, name: &str) -> String {
    match record.paths.iter().find(|path| path.name == name) {
        Some(path) => match path.source_ip {
            Some(ip) => format!("{name} ({ip})"),
            None => name.to_string(),
        },
        None => name.to_string(),
    }
}

fn check_retries(gate: &Gate, views: &[View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    let cleared: Vec<&View> = views.iter().filter(|view| view.message.cleared_after_retry).collect();
    let passed = cleared.is_empty() || gate.allow_cleared_deferrals;
    let detail = match cleared.len() {
        0 => "no message needed a retry to be accepted".to_string(),
        count => format!(
            "{count} {} accepted only after a deferral: {}",
            if count == 1 { "message was" } else { "messages were" },
            cleared
                .iter()
                .map(|view| format!("{} -> {}", view.message.path, view.message.seed))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if !cleared.is_empty() && !gate.allow_cleared_deferrals {
        let paths: BTreeSet<&str> = cleared.iter().map(|view| view.message.path.as_str()).collect();
        diagnosis.push(format!(
            "a deferral cleared on retry on {}: the receiver still throttles these paths, so raise volume slowly and watch for the deferral coming back",
            paths.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    criteria.push(criterion("no deferral that cleared only on retry", passed, Checkpoint::Warning, detail));
}

fn check_placement(
    record: &RunRecord,
    gate: &Gate,
    control: &[&View],
    criteria: &mut Vec<Criterion>,
    diagnosis: &mut Vec<String>,
) {
    if !gate.require_inbox {
        return;
    }
    let accepted: Vec<&&View> = control.iter().filter(|view| view.accepted()).collect();
    let spam: Vec<&&View> =
        accepted.iter().copied().filter(|view| view.message.placement == Some(Placement::Spam)).collect();
    let missing: Vec<&&View> =
        accepted.iter().copied().filter(|view| view.message.placement == Some(Placement::Missing)).collect();
    let unchecked: Vec<&&View> = accepted.iter().copied().filter(|view| view.message.placement.is_none()).collect();
    let inbox = accepted.len() - spam.len() - missing.len() - unchecked.len();

    let mut detail = format!("{inbox} of {} accepted control copies in the inbox", accepted.len());
    if !spam.is_empty() {
        let _ = write!(
            detail,
            "; in spam: {}",
            spam.iter()
                .map(|view| format!("{} via {}", view.message.seed, view.message.path))
                .collect::<Vec<_>>()
                .join(", ")
        );
        diagnosis.push(format!(
            "{} accepted control copies landed in spam: the gateway accepts the mail but filters it, so check content and authentication before volume",
            spam.len()
        ));
    }
    if !missing.is_empty() {
        let _ = write!(
            detail,
            "; not found: {}",
            missing
                .iter()
                .map(|view| format!(
                    "message {} to {} via {}",
                    view.message.sequence, view.message.seed, view.message.path
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        diagnosis.push(format!(
            "{} accepted control copies were not found in the seed mailboxes within the collection timeout: quarantined or held after acceptance",
            missing.len()
        ));
    }
    if !unchecked.is_empty() {
        let _ = write!(
            detail,
            "; not checked, no mailbox: {}",
            unchecked
                .iter()
                .map(|view| view.message.seed.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !record.collection_errors.is_empty() {
        let _ = write!(
            detail,
            "; unreadable mailboxes: {}",
            record.collection_errors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let passed = spam.is_empty() && missing.is_empty() && unchecked.is_empty() && record.collection_errors.is_empty();
    criteria.push(criterion("control in the inbox", passed, Checkpoint::Warning, detail));
}

fn check_authentication(gate: &Gate, control: &[&View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    let copies: Vec<(&&View, &CopyRecord)> =
        control.iter().filter_map(|view| view.copy.map(|copy| (view, copy))).collect();
    for method in &gate.require_auth {
        let name = method.as_str();
        for (side, label) in [(true, "at the receiver"), (false, "on our own check")] {
            let mut failures = Vec::new();
            let mut checked = 0;
            for (view, copy) in &copies {
                let Some(verdicts) = &copy.verdicts else { continue };
                let result = if side { verdicts.receiver_result(name) } else { verdicts.own_result(name) };
                let Some(result) = result else { continue };
                checked += 1;
                if result != "pass" {
                    failures.push(format!("{}={result} for {} via {}", name, view.message.seed, view.message.path));
                }
            }
            let passed = failures.is_empty();
            let detail = if checked == 0 {
                format!("no control copy carried a {name} result {label}")
            } else if failures.is_empty() {
                format!("{name}=pass on all {checked} control copies {label}")
            } else {
                failures.join("; ")
            };
            if !failures.is_empty() {
                diagnosis.push(format!(
                    "control mail fails {name} {label} ({}): fix the {name} record or signing first; a deferral cannot be judged as reputation while authentication fails",
                    failures[0]
                ));
            }
            // Without any copy nothing can be claimed either way; the copies'
            // absence is judged by the delivery and placement criteria.
            let mut result = criterion(format!("control {name} passes {label}"), passed, Checkpoint::Critical, detail);
            result.evaluated = checked > 0;
            criteria.push(result);
        }
    }
    for (view, copy) in &copies {
        for sentence in copy.verdicts.iter().flat_map(|verdicts| verdicts.disagreements.iter()) {
            let line = format!("{} via {}: {sentence}", view.message.seed, view.message.path);
            if !diagnosis.contains(&line) {
                diagnosis.push(line);
            }
        }
    }
}

fn check_bulk(
    gate: &Gate,
    control: &[&View],
    bulk: &[&View],
    criteria: &mut Vec<Criterion>,
    diagnosis: &mut Vec<String>,
) {
    if bulk.is_empty() {
        return;
    }
    let refused: Vec<&&View> = bulk.iter().filter(|view| view.refused()).collect();
    let rate = refused.len() as f64 / bulk.len() as f64;
    let passed = rate <= gate.max_bulk_deferral_rate;
    let detail = format!("{} of {} bulk messages accepted", bulk.len() - refused.len(), bulk.len());

    // Compare per path: control accepted and bulk refused on the same IP
    // points at the traffic itself, since DNS and the IP are the same.
    let mut split_paths: BTreeSet<&str> = BTreeSet::new();
    for view in &refused {
        let path = view.message.path.as_str();
        let control_on_path: Vec<&&View> = control.iter().filter(|control| control.message.path == path).collect();
        if !control_on_path.is_empty() && control_on_path.iter().all(|control| control.accepted()) {
            split_paths.insert(path);
        }
    }
    if !split_paths.is_empty() {
        let volume = refused
            .iter()
            .filter(|view| split_paths.contains(view.message.path.as_str()))
            .filter_map(|view| view.last_attempt.and_then(|attempt| attempt.classification.as_ref()))
            .all(|classification| classification.reason.as_str() == "rate-limit");
        let advice = if volume {
            "the receiver names volume or rate, so slow down per IP before judging the content"
        } else {
            "fix the bulk content and list before volume"
        };
        diagnosis.push(format!(
            "control accepted, bulk deferred on the same IP ({}): traffic quality or volume, not DNS; {advice}",
            split_paths.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    criteria.push(criterion("bulk accepted", passed, Checkpoint::Warning, detail));
}

/// Compares providers. Only one provider refusing points at its view of
/// our range, while every provider refusing points at our own traffic or
/// infrastructure.
fn diagnose_providers(tallies: &Tallies, diagnosis: &mut Vec<String>) {
    let refusing: Vec<&String> =
        tallies.by_provider.iter().filter(|(_, tally)| tally.refused() > 0).map(|(name, _)| name).collect();
    let accepting: Vec<&String> =
        tallies.by_provider.iter().filter(|(_, tally)| tally.refused() == 0).map(|(name, _)| name).collect();
    if tallies.by_provider.len() < 2 || refusing.is_empty() {
        return;
    }
    if accepting.is_empty() {
        diagnosis.push(format!(
            "every provider refuses part of the mail ({}): the cause is our own traffic or infrastructure, not one receiver's view",
            refusing.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    } else {
        diagnosis.push(format!(
            "only {} refuses while {} accepts: the refusing receiver's reputation of this range, so work with that receiver",
            refusing.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", "),
            accepting.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
}

fn diagnose_named_ips(record: &RunRecord, diagnosis: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for attempt in &record.attempts {
        if let Some(sentence) = &attempt.ip_mismatch
            && seen.insert(sentence.clone())
        {
            diagnosis.insert(0, format!("path {}: {sentence}", attempt.path));
        }
    }
}

/// Renders the verdict for the terminal.
pub fn render(verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "checkpoint: {} ({})", verdict.checkpoint.as_str(), verdict.checkpoint.action());
    for criterion in &verdict.criteria {
        let mark = match (criterion.evaluated, criterion.passed) {
            (false, _) => "n/a ",
            (true, true) => "pass",
            (true, false) => "FAIL",
        };
        let _ = writeln!(out, "  [{mark}] {}: {}", criterion.name, criterion.detail);
    }
    if !verdict.complete {
        let _ = writeln!(out, "the run cannot be evaluated as it stands (exit code 1):");
        for reason in &verdict.incomplete {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    if !verdict.diagnosis.is_empty() {
        let _ = writeln!(out, "diagnosis:");
        for sentence in &verdict.diagnosis {
            let _ = writeln!(out, "  - {sentence}");
        }
    }
    out
}

#[cfg(test)]
mod tests;
