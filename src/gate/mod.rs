//! The gate: tallies of a run per stream, path, pool, provider and seed, the
//! checkpoint (healthy, warning, critical) with the criteria behind it, and
//! the diagnosis a postmaster reads. It reads only the run record, so `gate`
//! re-evaluates a saved run, also with another scenario's thresholds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::collect::Placement;
use crate::exit::ExitStatus;
use crate::run::record::{AttemptRecord, CopyRecord, MessageRecord, RunRecord};
use crate::scenario::{Gate, Role};
use crate::smtp::record::Outcome;

/// The gate's answer.
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

    /// What the checkpoint tells the sender to do.
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
    /// The checkpoint this criterion forces when it fails.
    pub severity: Checkpoint,
    pub detail: String,
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
    pub criteria: Vec<Criterion>,
    /// Sentences in the field's words, most important first.
    pub diagnosis: Vec<String>,
    pub tallies: Tallies,
    /// The thresholds this verdict was computed with.
    pub gate: Gate,
}

/// Everything known about one planned message.
struct View<'a> {
    message: &'a MessageRecord,
    provider: String,
    copy: Option<&'a CopyRecord>,
    last_attempt: Option<&'a AttemptRecord>,
}

impl View<'_> {
    fn refused(&self) -> bool {
        matches!(self.message.outcome, Some(Outcome::Deferred | Outcome::Rejected | Outcome::Failed))
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
    if checkpoint == Checkpoint::Healthy {
        diagnosis.insert(
            0,
            "every control message was accepted without a new deferral, found in the inbox and authenticated: resume volume gradually, watching the same replies".to_string(),
        );
    }
    Verdict { checkpoint, criteria, diagnosis, tallies, gate: gate.clone() }
}

fn views(record: &RunRecord) -> Vec<View<'_>> {
    record
        .messages
        .iter()
        .map(|message| {
            let domain = crate::scenario::address::domain_of(&message.seed).to_ascii_lowercase();
            let provider = record.seed_providers.get(&domain).cloned().unwrap_or_else(|| "other".to_string());
            let copy = record.copies.iter().find(|copy| copy.sequence == message.sequence);
            let last_attempt = message
                .attempts
                .last()
                .and_then(|number| record.attempts.iter().find(|attempt| attempt.number == *number));
            View { message, provider, copy, last_attempt }
        })
        .collect()
}

/// True when every method `gate` requires passed, at the receiver and on
/// our own check; `None` when the copy carries no verdicts to judge.
fn authenticated(copy: &CopyRecord, gate: &Gate) -> Option<bool> {
    let verdicts = copy.verdicts.as_ref()?;
    Some(gate.require_auth.iter().all(|method| {
        verdicts.receiver_result(method.as_str()) == Some("pass") && verdicts.own_result(method.as_str()) == Some("pass")
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
        .and_then(|reply| reply.lines.first())
        .cloned()
        .unwrap_or_else(|| "no reply".into());
    format!("{} -> {}: {}", view.message.path, view.message.seed, reply)
}

fn check_control_delivery(record: &RunRecord, gate: &Gate, control: &[&View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    if control.is_empty() {
        criteria.push(Criterion {
            name: "control messages sent".into(),
            passed: false,
            severity: Checkpoint::Warning,
            detail: "the scenario has no control stream, so nothing separates reputation from content".into(),
        });
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
    for view in refused.iter().take(5) {
        let _ = write!(detail, "; {}", describe_refusal(view));
    }
    if !broad.is_empty() {
        criteria.push(Criterion { name: "control accepted".into(), passed: false, severity: Checkpoint::Critical, detail });
        let reasons = refusal_reasons(&refused);
        diagnosis.push(format!(
            "control deferred too, across {}: {}; hold volume and take the evidence packet to the receiver",
            broad.join(", "),
            if reasons.contains("authentication") {
                "the receiver names an authentication problem, so fix the record it names first".to_string()
            } else {
                "IP or range reputation, not content".to_string()
            }
        ));
    } else if rate > gate.max_control_deferral_rate {
        criteria.push(Criterion { name: "control accepted".into(), passed: false, severity: Checkpoint::Warning, detail });
        let refused_paths: BTreeSet<&str> = refused.iter().map(|view| view.message.path.as_str()).collect();
        let clean_paths: BTreeSet<&str> = control
            .iter()
            .map(|view| view.message.path.as_str())
            .filter(|path| !refused_paths.contains(path))
            .collect();
        let refused_list = refused_paths.iter().map(|path| describe_path(record, path)).collect::<Vec<_>>().join(", ");
        if clean_paths.is_empty() {
            diagnosis.push(format!("part of the control mail is refused on {refused_list}: reputation is borderline for these seeds; throttle and retest"));
        } else {
            diagnosis.push(format!(
                "only part of the range or pool defers: control refused on {refused_list} while {} accepted it; the reputation problem is specific to those IPs, so move volume off them and throttle",
                clean_paths.iter().map(|path| describe_path(record, path)).collect::<Vec<_>>().join(", ")
            ));
        }
    } else {
        criteria.push(Criterion { name: "control accepted".into(), passed: true, severity: Checkpoint::Critical, detail });
    }
}

fn refusal_reasons(refused: &[&&View]) -> BTreeSet<String> {
    refused.iter().filter_map(|view| view.last_attempt).filter_map(|attempt| attempt.reason.clone()).collect()
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
    let detail = if cleared.is_empty() {
        "no message needed a retry to be accepted".to_string()
    } else {
        format!(
            "{} messages were accepted only after a deferral: {}",
            cleared.len(),
            cleared.iter().map(|view| format!("{} -> {}", view.message.path, view.message.seed)).collect::<Vec<_>>().join(", ")
        )
    };
    if !cleared.is_empty() && !gate.allow_cleared_deferrals {
        diagnosis.push("a deferral cleared on retry: the receiver still throttles these paths, so raise volume slowly and watch for the deferral coming back".to_string());
    }
    criteria.push(Criterion { name: "no deferral that cleared only on retry".into(), passed, severity: Checkpoint::Warning, detail });
}

fn check_placement(record: &RunRecord, gate: &Gate, control: &[&View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    if !gate.require_inbox {
        return;
    }
    let accepted: Vec<&&View> = control.iter().filter(|view| view.accepted()).collect();
    let spam: Vec<&&View> = accepted.iter().copied().filter(|view| view.message.placement == Some(Placement::Spam)).collect();
    let missing: Vec<&&View> = accepted.iter().copied().filter(|view| view.message.placement == Some(Placement::Missing)).collect();
    let unchecked: Vec<&&View> = accepted.iter().copied().filter(|view| view.message.placement.is_none()).collect();
    let inbox = accepted.len() - spam.len() - missing.len() - unchecked.len();

    let mut detail = format!("{inbox} of {} accepted control copies in the inbox", accepted.len());
    if !spam.is_empty() {
        let _ = write!(detail, "; in spam: {}", spam.iter().map(|view| view.message.seed.as_str()).collect::<Vec<_>>().join(", "));
        diagnosis.push(format!(
            "{} accepted control copies landed in spam: the gateway accepts the mail but filters it, so check content and authentication before volume",
            spam.len()
        ));
    }
    if !missing.is_empty() {
        let _ = write!(detail, "; not found: {}", missing.iter().map(|view| view.message.seed.as_str()).collect::<Vec<_>>().join(", "));
        diagnosis.push(format!(
            "{} accepted control copies were not found in the seed mailboxes within the collection timeout: quarantined or held after acceptance",
            missing.len()
        ));
    }
    if !unchecked.is_empty() {
        let _ = write!(
            detail,
            "; not checked, no mailbox: {}",
            unchecked.iter().map(|view| view.message.seed.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if !record.collection_errors.is_empty() {
        let _ = write!(detail, "; unreadable mailboxes: {}", record.collection_errors.keys().cloned().collect::<Vec<_>>().join(", "));
    }
    let passed = spam.is_empty() && missing.is_empty() && unchecked.is_empty() && record.collection_errors.is_empty();
    criteria.push(Criterion { name: "control in the inbox".into(), passed, severity: Checkpoint::Warning, detail });
}

fn check_authentication(gate: &Gate, control: &[&View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
    let copies: Vec<(&&View, &CopyRecord)> = control.iter().filter_map(|view| view.copy.map(|copy| (view, copy))).collect();
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
            let passed = failures.is_empty() && checked > 0;
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
            // Without any copy the gate cannot claim authentication passed,
            // but nothing failed either.
            let severity = if checked == 0 { Checkpoint::Warning } else { Checkpoint::Critical };
            criteria.push(Criterion { name: format!("control {name} passes {label}"), passed, severity, detail });
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

fn check_bulk(gate: &Gate, control: &[&View], bulk: &[&View], criteria: &mut Vec<Criterion>, diagnosis: &mut Vec<String>) {
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
        diagnosis.push(format!(
            "control accepted, bulk deferred on the same IP ({}): traffic quality or volume, not DNS; fix the bulk content and list before volume",
            split_paths.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    criteria.push(Criterion { name: "bulk accepted".into(), passed, severity: Checkpoint::Warning, detail });
}

/// The provider comparison: only one provider refusing points at its view
/// of our range; every provider refusing points at our own traffic or
/// infrastructure.
fn diagnose_providers(tallies: &Tallies, diagnosis: &mut Vec<String>) {
    let refusing: Vec<&String> = tallies.by_provider.iter().filter(|(_, tally)| tally.refused() > 0).map(|(name, _)| name).collect();
    let accepting: Vec<&String> = tallies.by_provider.iter().filter(|(_, tally)| tally.refused() == 0).map(|(name, _)| name).collect();
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
        let mark = if criterion.passed { "pass" } else { "FAIL" };
        let _ = writeln!(out, "  [{mark}] {}: {}", criterion.name, criterion.detail);
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
