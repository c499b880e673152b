//! The RFC 8601 result keywords for mail-auth's result types, shared by the
//! simulator's Authentication-Results and mailcanary's own checks.

use mail_auth::{DkimResult, DmarcResult, SpfResult};

pub fn spf(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

pub fn dmarc(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// Returns the keyword of one DKIM signature's result and the error behind
/// it, if any.
pub fn dkim(result: &DkimResult) -> (&'static str, Option<String>) {
    match result {
        DkimResult::Pass => ("pass", None),
        // mail-auth 0.13 reports a body hash mismatch as neutral; RFC 6376
        // section 6.3 makes it a permanent failure, which receivers write as
        // dkim=fail.
        DkimResult::Neutral(error @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => {
            ("fail", Some(error.to_string()))
        }
        DkimResult::Neutral(error) => ("neutral", Some(error.to_string())),
        DkimResult::Fail(error) => ("fail", Some(error.to_string())),
        DkimResult::PermError(error) => ("permerror", Some(error.to_string())),
        DkimResult::TempError(error) => ("temperror", Some(error.to_string())),
        DkimResult::None => ("none", None),
    }
}
