//! The process exit codes, in one table. `main` maps every result through
//! [`ExitStatus::code`], and nothing else calls `process::exit`.

/// The result a finished command reports to its caller (a cron job, CI, an MTA
/// operator's script) through its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The checkpoint is healthy, or a command without a checkpoint succeeded.
    Healthy,
    /// The run could not be completed or evaluated (network, DNS, IMAP,
    /// internal error).
    RunFailed,
    /// Invalid usage or an invalid scenario; nothing was sent.
    Usage,
    /// The checkpoint is warning: throttle and segment.
    Warning,
    /// The checkpoint is critical: hold volume and escalate.
    Critical,
}

impl ExitStatus {
    pub const ALL: [ExitStatus; 5] =
        [ExitStatus::Healthy, ExitStatus::RunFailed, ExitStatus::Usage, ExitStatus::Warning, ExitStatus::Critical];

    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Healthy => 0,
            ExitStatus::RunFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Warning => 3,
            ExitStatus::Critical => 4,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            ExitStatus::Healthy => "healthy",
            ExitStatus::RunFailed => "the run could not be completed or evaluated",
            ExitStatus::Usage => "invalid usage or invalid scenario; nothing was sent",
            ExitStatus::Warning => "warning",
            ExitStatus::Critical => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        let table: Vec<(ExitStatus, i32)> = ExitStatus::ALL.iter().map(|status| (*status, status.code())).collect();
        assert_eq!(
            table,
            vec![
                (ExitStatus::Healthy, 0),
                (ExitStatus::RunFailed, 1),
                (ExitStatus::Usage, 2),
                (ExitStatus::Warning, 3),
                (ExitStatus::Critical, 4),
            ]
        );
    }
}
