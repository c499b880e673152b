//! The classification rules: the TOML form in `rules.toml` (built in) or a
//! user's file, validated into compiled matchers, and the matching itself.
//!
//! Each table is a list tried in the order written; the first rule that
//! matches wins. A user's rules are tried before the built-in ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::{Diagnostics, FieldError, SourceFile};
use crate::smtp::record::{Outcome, Step};

use super::{Provider, Reason};

const BUILTIN_TEXT: &str = include_str!("rules.toml");

static BUILTIN: LazyLock<Rules> = LazyLock::new(|| {
    let source = SourceFile { path: "src/classify/rules.toml".into(), text: BUILTIN_TEXT.to_owned() };
    Rules::from_source(&source)
        .unwrap_or_else(|diagnostics| panic!("the built-in classification rules are invalid:\n{diagnostics}"))
});

/// Compiled classification rules: provider detection, outcome clues,
/// reasons and the advice for each reason.
#[derive(Debug, Clone)]
pub struct Rules {
    providers: Vec<ProviderRule>,
    outcomes: Vec<OutcomeRule>,
    reasons: Vec<ReasonRule>,
    advice: BTreeMap<Reason, Advice>,
}

/// Loads a user's rules file and puts its rules before the built-in ones.
///
/// A syntax error, an unknown key, an invalid regex or pattern, or a rule
/// without conditions is reported as `file:line:column` with the key.
/// Advice given for a reason replaces the built-in advice for that reason.
pub fn load_user_rules(path: &Path) -> Result<Rules, Diagnostics> {
    let source = SourceFile::read(path)?;
    let user = Rules::from_source(&source)?;
    Ok(user.followed_by(Rules::builtin()))
}

impl Default for Rules {
    fn default() -> Self {
        Rules::builtin().clone()
    }
}

impl Rules {
    /// Returns the rules compiled into the binary, parsed on first use.
    pub fn builtin() -> &'static Rules {
        &BUILTIN
    }

    fn from_source(source: &SourceFile) -> Result<Rules, Diagnostics> {
        let raw: RawFile = source.parse()?;
        let mut errors = Vec::new();
        let rules = compile(raw, &mut errors);
        if errors.is_empty() { Ok(rules) } else { Err(source.diagnostics(errors)) }
    }

    fn followed_by(mut self, later: &Rules) -> Rules {
        self.providers.extend(later.providers.iter().cloned());
        self.outcomes.extend(later.outcomes.iter().cloned());
        self.reasons.extend(later.reasons.iter().cloned());
        for (reason, advice) in &later.advice {
            self.advice.entry(*reason).or_insert_with(|| advice.clone());
        }
        self
    }

    /// Finds the provider: wording rules first, then MX suffix rules,
    /// because a wrapped or forwarded reply keeps its author's wording.
    pub(super) fn detect_provider(&self, subject: &Subject<'_>, mx_host: Option<&str>) -> Option<(Provider, &str)> {
        let by_wording = self
            .providers
            .iter()
            .filter(|rule| rule.mx_suffixes.is_empty())
            .find(|rule| rule.conditions.matches(subject));
        if let Some(rule) = by_wording {
            return Some((rule.provider, &rule.id));
        }

        let host = mx_host?.trim().trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .iter()
            .find(|rule| rule.mx_suffixes.iter().any(|suffix| host_has_suffix(&host, suffix)))
            .map(|rule| (rule.provider, rule.id.as_str()))
    }

    /// Names the provider an MX host name reveals (`*.pphosted.com` is
    /// Proofpoint), or `Other`.
    pub fn provider_of_host(&self, host: &str) -> Provider {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .iter()
            .find(|rule| rule.mx_suffixes.iter().any(|suffix| host_has_suffix(&host, suffix)))
            .map_or(Provider::Other, |rule| rule.provider)
    }

    /// Reads the outcome from the wording, for text without any code.
    pub(super) fn outcome_from_wording(&self, subject: &Subject<'_>) -> Option<(Outcome, &str)> {
        self.outcomes.iter().find(|rule| rule.conditions.matches(subject)).map(|rule| (rule.outcome, rule.id.as_str()))
    }

    /// Finds the first reason rule that matches.
    pub(super) fn match_reason(&self, subject: &Subject<'_>) -> Option<&ReasonRule> {
        self.reasons.iter().find(|rule| rule.conditions.matches(subject))
    }

    pub(super) fn advice_for(&self, reason: Reason) -> Option<&Advice> {
        self.advice.get(&reason)
    }
}

/// The input of a rule: one reply with its context.
pub(super) struct Subject<'a> {
    /// The reply text, codes removed and whitespace collapsed.
    pub text: &'a str,
    pub lowercase_text: String,
    pub raw_lines: &'a [String],
    pub code: Option<u16>,
    pub enhanced: Option<&'a str>,
    pub stage: Option<Step>,
    pub provider: Option<Provider>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone)]
struct ProviderRule {
    id: String,
    provider: Provider,
    mx_suffixes: Vec<String>,
    conditions: Conditions,
}

#[derive(Debug, Clone)]
struct OutcomeRule {
    id: String,
    outcome: Outcome,
    conditions: Conditions,
}

#[derive(Debug, Clone)]
pub(super) struct ReasonRule {
    pub id: String,
    pub reason: Reason,
    /// Steps specific to this rule, shown before the reason's own advice.
    pub advice: Vec<String>,
    conditions: Conditions,
}

/// Advice for one reason. Steps may name `{ip}`, `{lookup_url}` and
/// `{provider}`.
#[derive(Debug, Clone, Default)]
pub(super) struct Advice {
    pub steps: Vec<String>,
    pub with_url: Vec<String>,
    pub without_url: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Conditions {
    /// Lowercased substrings.
    contains: Vec<String>,
    regexes: Vec<Regex>,
    raw_regexes: Vec<Regex>,
    codes: Vec<CodeRange>,
    enhanced: Vec<EnhancedPattern>,
    stages: Vec<Step>,
    providers: Vec<Provider>,
    outcomes: Vec<Outcome>,
    has_text: Option<bool>,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        !self.has_text_condition()
            && self.codes.is_empty()
            && self.enhanced.is_empty()
            && self.stages.is_empty()
            && self.providers.is_empty()
            && self.outcomes.is_empty()
            && self.has_text.is_none()
    }

    fn has_text_condition(&self) -> bool {
        !self.contains.is_empty() || !self.regexes.is_empty() || !self.raw_regexes.is_empty()
    }

    fn matches(&self, subject: &Subject<'_>) -> bool {
        if let Some(has_text) = self.has_text
            && has_text == subject.text.is_empty()
        {
            return false;
        }
        if !self.codes.is_empty()
            && !subject.code.is_some_and(|code| self.codes.iter().any(|range| range.contains(code)))
        {
            return false;
        }
        if !self.enhanced.is_empty()
            && !subject.enhanced.is_some_and(|enhanced| self.enhanced.iter().any(|pattern| pattern.matches(enhanced)))
        {
            return false;
        }
        if !self.stages.is_empty() && !subject.stage.is_some_and(|stage| self.stages.contains(&stage)) {
            return false;
        }
        if !self.providers.is_empty() && !subject.provider.is_some_and(|provider| self.providers.contains(&provider)) {
            return false;
        }
        if !self.outcomes.is_empty() && !subject.outcome.is_some_and(|outcome| self.outcomes.contains(&outcome)) {
            return false;
        }
        !self.has_text_condition() || self.text_matches(subject)
    }

    fn text_matches(&self, subject: &Subject<'_>) -> bool {
        self.contains.iter().any(|needle| subject.lowercase_text.contains(needle.as_str()))
            || self.regexes.iter().any(|regex| regex.is_match(subject.text))
            || self.raw_regexes.iter().any(|regex| subject.raw_lines.iter().any(|line| regex.is_match(line)))
    }
}

/// A reply code, a class such as `4xx`, or a range such as `500-504`.
#[derive(Debug, Clone, Copy)]
struct CodeRange {
    low: u16,
    high: u16,
}

impl CodeRange {
    fn parse(text: &str) -> Option<CodeRange> {
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            let digit: u16 = class.parse().ok().filter(|digit| (2..=5).contains(digit))?;
            return Some(CodeRange { low: digit * 100, high: digit * 100 + 99 });
        }
        let (low, high) = match text.split_once('-') {
            Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
            None => {
                let code = text.parse().ok()?;
                (code, code)
            }
        };
        let valid = |code: u16| (200..=599).contains(&code);
        (valid(low) && valid(high) && low <= high).then_some(CodeRange { low, high })
    }

    fn contains(self, code: u16) -> bool {
        (self.low..=self.high).contains(&code)
    }
}

/// An enhanced status code pattern: `class.subject.detail`, each part a
/// number or `*`/`X` for any, and the detail may be a range (`500-699`).
#[derive(Debug, Clone, Copy)]
struct EnhancedPattern {
    class: Option<u16>,
    subject: Option<u16>,
    detail: Option<(u16, u16)>,
}

impl EnhancedPattern {
    fn parse(text: &str) -> Option<EnhancedPattern> {
        let mut parts = text.trim().split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }

        let any = |part: &str| matches!(part, "*" | "x" | "X");
        let number = |part: &str| -> Option<Option<u16>> {
            if any(part) {
                return Some(None);
            }
            part.parse().ok().map(Some)
        };

        let class = number(class)?;
        if class.is_some_and(|class| !matches!(class, 2 | 4 | 5)) {
            return None;
        }
        let subject = number(subject)?;
        let detail = if any(detail) {
            None
        } else {
            let (low, high) = match detail.split_once('-') {
                Some((low, high)) => (low.parse().ok()?, high.parse().ok()?),
                None => {
                    let value = detail.parse().ok()?;
                    (value, value)
                }
            };
            if low > high {
                return None;
            }
            Some((low, high))
        };
        Some(EnhancedPattern { class, subject, detail })
    }

    fn matches(self, enhanced: &str) -> bool {
        let mut parts = enhanced.trim_start_matches('#').split('.').map(|part| part.parse::<u16>().ok());
        let (Some(Some(class)), Some(Some(subject)), Some(Some(detail))) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        self.class.is_none_or(|expected| expected == class)
            && self.subject.is_none_or(|expected| expected == subject)
            && self.detail.is_none_or(|(low, high)| (low..=high).contains(&detail))
    }
}

fn host_has_suffix(host: &str, suffix: &str) -> bool {
    let suffix = suffix.trim_start_matches('.').to_ascii_lowercase();
    host == suffix || host.ends_with(&format!(".{suffix}"))
}

// --- The TOML form -----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    provider: Vec<RawProviderRule>,
    #[serde(default)]
    outcome: Vec<RawOutcomeRule>,
    #[serde(default)]
    reason: Vec<RawReasonRule>,
    #[serde(default)]
    advice: BTreeMap<Reason, RawAdvice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviderRule {
    id: Spanned<String>,
    provider: Provider,
    #[serde(default)]
    mx_suffix: Vec<String>,
    /// The reason the rule exists, for readers of the file only.
    #[serde(default, rename = "note")]
    _note: Option<String>,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    regex: Vec<Spanned<String>>,
    #[serde(default)]
    raw_regex: Vec<Spanned<String>>,
    #[serde(default)]
    code: Vec<Spanned<String>>,
    #[serde(default)]
    enhanced: Vec<Spanned<String>>,
    #[serde(default)]
    stage: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcomeRule {
    id: Spanned<String>,
    outcome: OutcomeName,
    /// The reason the rule exists, for readers of the file only.
    #[serde(default, rename = "note")]
    _note: Option<String>,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    regex: Vec<Spanned<String>>,
    #[serde(default)]
    raw_regex: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReasonRule {
    id: Spanned<String>,
    reason: Reason,
    /// The reason the rule exists, for readers of the file only.
    #[serde(default, rename = "note")]
    _note: Option<String>,
    #[serde(default)]
    advice: Vec<String>,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    regex: Vec<Spanned<String>>,
    #[serde(default)]
    raw_regex: Vec<Spanned<String>>,
    #[serde(default)]
    code: Vec<Spanned<String>>,
    #[serde(default)]
    enhanced: Vec<Spanned<String>>,
    #[serde(default)]
    stage: Vec<Step>,
    #[serde(default)]
    provider: Vec<Provider>,
    #[serde(default)]
    outcome: Vec<OutcomeName>,
    #[serde(default)]
    has_text: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvice {
    #[serde(default)]
    steps: Vec<String>,
    #[serde(default)]
    with_url: Vec<String>,
    #[serde(default)]
    without_url: Vec<String>,
}

/// The outcomes a reply can have; `failed` (no reply at all) is not one.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OutcomeName {
    Accepted,
    Deferred,
    Rejected,
}

impl From<OutcomeName> for Outcome {
    fn from(name: OutcomeName) -> Outcome {
        match name {
            OutcomeName::Accepted => Outcome::Accepted,
            OutcomeName::Deferred => Outcome::Deferred,
            OutcomeName::Rejected => Outcome::Rejected,
        }
    }
}

// --- Validation --------------------------------------------------------

fn compile(raw: RawFile, errors: &mut Vec<FieldError>) -> Rules {
    let mut seen_ids = BTreeMap::new();

    let mut providers = Vec::new();
    for (index, rule) in raw.provider.into_iter().enumerate() {
        let key = format!("provider[{index}]");
        check_id(&rule.id, &key, &mut seen_ids, errors);
        let mut conditions = text_conditions(&rule.contains, &rule.regex, &rule.raw_regex, &key, errors);
        conditions.codes = code_ranges(&rule.code, &key, errors);
        conditions.enhanced = enhanced_patterns(&rule.enhanced, &key, errors);
        conditions.stages = rule.stage;

        if !rule.mx_suffix.is_empty() && !conditions.is_empty() {
            errors.push(FieldError::at(
                &rule.id,
                format!("{key}.mx_suffix"),
                "a provider rule matches either the MX host (mx_suffix) or the reply, not both; split it into two rules",
            ));
        } else if rule.mx_suffix.is_empty() && conditions.is_empty() {
            errors.push(FieldError::at(
                &rule.id,
                key.clone(),
                "the rule has no condition; add mx_suffix, contains, regex, raw_regex, code, enhanced or stage",
            ));
        }
        providers.push(ProviderRule {
            id: rule.id.into_inner(),
            provider: rule.provider,
            mx_suffixes: rule.mx_suffix,
            conditions,
        });
    }

    let mut outcomes = Vec::new();
    for (index, rule) in raw.outcome.into_iter().enumerate() {
        let key = format!("outcome[{index}]");
        check_id(&rule.id, &key, &mut seen_ids, errors);
        let conditions = text_conditions(&rule.contains, &rule.regex, &rule.raw_regex, &key, errors);
        if conditions.is_empty() {
            errors.push(FieldError::at(
                &rule.id,
                key.clone(),
                "the rule has no condition; add contains, regex or raw_regex",
            ));
        }
        outcomes.push(OutcomeRule { id: rule.id.into_inner(), outcome: rule.outcome.into(), conditions });
    }

    let mut reasons = Vec::new();
    for (index, rule) in raw.reason.into_iter().enumerate() {
        let key = format!("reason[{index}]");
        check_id(&rule.id, &key, &mut seen_ids, errors);
        let mut conditions = text_conditions(&rule.contains, &rule.regex, &rule.raw_regex, &key, errors);
        conditions.codes = code_ranges(&rule.code, &key, errors);
        conditions.enhanced = enhanced_patterns(&rule.enhanced, &key, errors);
        conditions.stages = rule.stage;
        conditions.providers = rule.provider;
        conditions.outcomes = rule.outcome.into_iter().map(Outcome::from).collect();
        conditions.has_text = rule.has_text;
        if conditions.is_empty() {
            errors.push(FieldError::at(
                &rule.id,
                key.clone(),
                "the rule has no condition, so it would match every reply; add at least one",
            ));
        }
        reasons.push(ReasonRule { id: rule.id.into_inner(), reason: rule.reason, advice: rule.advice, conditions });
    }

    let advice = raw
        .advice
        .into_iter()
        .map(|(reason, raw)| {
            let advice = Advice { steps: raw.steps, with_url: raw.with_url, without_url: raw.without_url };
            (reason, advice)
        })
        .collect();

    Rules { providers, outcomes, reasons, advice }
}

fn check_id(id: &Spanned<String>, key: &str, seen: &mut BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if id.get_ref().trim().is_empty() {
        errors.push(FieldError::at(id, format!("{key}.id"), "empty rule id; give the rule a short name"));
        return;
    }
    if let Some(first) = seen.insert(id.get_ref().clone(), key.to_owned()) {
        errors.push(FieldError::at(
            id,
            format!("{key}.id"),
            format!("duplicate rule id {:?}, already used by {first}", id.get_ref()),
        ));
    }
}

fn text_conditions(
    contains: &[String],
    regex: &[Spanned<String>],
    raw_regex: &[Spanned<String>],
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Conditions {
    Conditions {
        contains: contains.iter().map(|needle| needle.to_lowercase()).collect(),
        regexes: compile_regexes(regex, &format!("{key}.regex"), errors),
        raw_regexes: compile_regexes(raw_regex, &format!("{key}.raw_regex"), errors),
        ..Conditions::default()
    }
}

fn compile_regexes(patterns: &[Spanned<String>], key: &str, errors: &mut Vec<FieldError>) -> Vec<Regex> {
    let mut compiled = Vec::new();
    for pattern in patterns {
        match RegexBuilder::new(pattern.get_ref()).case_insensitive(true).build() {
            Ok(regex) => compiled.push(regex),
            Err(error) => {
                let detail = error.to_string().lines().last().unwrap_or_default().trim().to_owned();
                errors.push(FieldError::at(pattern, key, format!("invalid regex {:?}: {detail}", pattern.get_ref())));
            }
        }
    }
    compiled
}

fn code_ranges(values: &[Spanned<String>], key: &str, errors: &mut Vec<FieldError>) -> Vec<CodeRange> {
    values
        .iter()
        .filter_map(|value| {
            let parsed = CodeRange::parse(value.get_ref());
            if parsed.is_none() {
                errors.push(FieldError::at(
                    value,
                    format!("{key}.code"),
                    format!(
                        "invalid reply code {:?}; write a code (421), a class (4xx) or a range (500-504)",
                        value.get_ref()
                    ),
                ));
            }
            parsed
        })
        .collect()
}

fn enhanced_patterns(values: &[Spanned<String>], key: &str, errors: &mut Vec<FieldError>) -> Vec<EnhancedPattern> {
    values
        .iter()
        .filter_map(|value| {
            let parsed = EnhancedPattern::parse(value.get_ref());
            if parsed.is_none() {
                errors.push(FieldError::at(
                    value,
                    format!("{key}.enhanced"),
                    format!(
                        "invalid enhanced code pattern {:?}; write class.subject.detail, such as 5.7.26, X.1.X or 4.7.500-699",
                        value.get_ref()
                    ),
                ));
            }
            parsed
        })
        .collect()
}
