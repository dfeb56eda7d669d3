//! Exit codes (DESIGN.md §3.3).

/// What the process tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Every request succeeded.
    Success = 0,
    /// Usage, configuration or input error; nothing was submitted.
    Usage = 1,
    /// The run finished with failed items.
    Failed = 2,
    /// The cost cap stopped the run.
    CostCap = 3,
    /// Interrupted; state saved.
    Interrupted = 130,
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
