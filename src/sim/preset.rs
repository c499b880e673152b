//! Reply presets: the shapes of real gateway replies, with `{ip}`,
//! `{hostname}` and `{queue_id}` filled in when the simulator sends them.
//!
//! Each preset also names the stage used when a rule sets none, because a
//! provider tends to refuse at one point of the session (Proofpoint's
//! reputation deferral arrives in the greeting, Gmail's rate limit after the
//! message). The stage is the simulator's choice for the rehearsal, and a
//! rule's `stage` key overrides it.

use super::policy::Stage;

/// A named reply that a rule can use in place of a literal one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    /// Stage used when the rule has no `stage` key.
    pub stage: Stage,
    /// The reply, one line per `\n`, each line with its code.
    pub text: &'static str,
}

/// Every preset, in the order that error messages list them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "proofpoint",
        stage: Stage::Greeting,
        text: "421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip={ip}",
    },
    Preset {
        name: "proofpoint-block",
        stage: Stage::Greeting,
        text: "554 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip={ip}",
    },
    Preset {
        name: "microsoft-s3150",
        stage: Stage::Rcpt,
        text: "550 5.7.1 Unfortunately, messages from [{ip}] weren't sent. Please contact your \
               Internet service provider since part of their network is on our block list (S3150). \
               You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. \
               [{hostname}]",
    },
    Preset {
        name: "microsoft-rate",
        stage: Stage::Rcpt,
        text: "451 4.7.650 The mail server [{ip}] has been temporarily rate limited due to IP \
               reputation. For e-mail delivery information, see https://postmaster.live.com (S3113) \
               [{hostname}]",
    },
    Preset {
        name: "microsoft-banned",
        stage: Stage::Rcpt,
        text: "550 5.7.606 Access denied, banned sending IP [{ip}]. To request removal from this \
               list please visit https://sender.office.com/ and follow the directions. For more \
               information please go to http://go.microsoft.com/fwlink/?LinkID=526655 [{hostname}]",
    },
    Preset {
        name: "yahoo-tss04",
        stage: Stage::Mail,
        text: "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume \
               or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    },
    Preset {
        name: "gmail-rate",
        stage: Stage::EndOfData,
        text: "421-4.7.28 [{ip}] Our system has detected an unusual rate of\n\
               421-4.7.28 unsolicited mail originating from your IP address. To protect our\n\
               421-4.7.28 users from spam, mail sent from your IP address has been temporarily\n\
               421-4.7.28 rate limited. Please visit\n\
               421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n\
               421 4.7.28 review our Bulk Email Senders Guidelines. {queue_id} - gsmtp",
    },
    Preset {
        name: "mimecast",
        stage: Stage::Rcpt,
        text: "451 Internal resource temporarily unavailable - \
               https://community.mimecast.com/docs/DOC-1369#451 [{queue_id}]",
    },
    Preset {
        name: "mimecast-reputation",
        stage: Stage::Rcpt,
        text: "550 csi.mimecast.org Poor Reputation Sender. - \
               https://community.mimecast.com/docs/DOC-1369#550 [{queue_id}]",
    },
    Preset {
        name: "cisco-reputation",
        stage: Stage::Greeting,
        text: "554 Your access to this mail system has been rejected due to the sending MTA's \
               poor reputation. If you believe that this failure is in error, please contact the \
               intended recipient via alternate means.",
    },
    // NOTE: the greylist preset is only the reply. The simulator keeps no
    // greylist triplets, so a retry is deferred again rather than accepted.
    Preset {
        name: "greylist",
        stage: Stage::Rcpt,
        text: "451 4.7.1 Recipient address rejected: Greylisted for 5 minutes",
    },
];

/// Looks a preset up by its exact name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|preset| preset.name == name)
}

/// Lists the names of all presets, comma-separated, for error messages.
pub fn names() -> String {
    PRESETS.iter().map(|preset| preset.name).collect::<Vec<_>>().join(", ")
}
