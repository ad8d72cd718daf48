//! Exit codes and the one place errors are printed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use owo_colors::OwoColorize;

use crate::error::{block, is_interrupted};
use crate::render::is_broken_pipe;

/// How a command ended. The same codes for all four plugins (see `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success (also "no resources found").
    Success,
    /// 1: the command ran and the answer is negative (drift, untrusted, mismatch).
    Negative,
    /// 2: an error (usage, not found, forbidden, unreachable, bad input), or some pods failed.
    Error,
    /// 130: interrupted.
    Interrupted,
}

impl ExitStatus {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Negative => 1,
            Self::Error => 2,
            Self::Interrupted => 130,
        }
    }

    /// The worse of two outcomes (error > negative > success; interrupted wins).
    pub fn merge(self, other: Self) -> Self {
        fn rank(s: ExitStatus) -> u8 {
            match s {
                ExitStatus::Success => 0,
                ExitStatus::Negative => 1,
                ExitStatus::Error => 2,
                ExitStatus::Interrupted => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// Print an error chain with its hint to stderr:
/// `error: <top>` / `  caused by: <each source>` / `hint: <text>`.
pub fn print_error(err: &(dyn std::error::Error + 'static)) {
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let paint = |label: &'static str| match (color, label) {
        (false, _) => label.to_string(),
        (true, "hint:") => label.cyan().to_string(),
        (true, _) => label.red().bold().to_string(),
    };
    let text = block(err, "", &paint);
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Turn a command's result into the process exit code, printing the error once.
/// A closed stdout pipe ends quietly with 0, as ripgrep and bat do.
pub fn report<E>(result: Result<ExitStatus, E>) -> ExitCode
where
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    match result {
        Ok(s) => s.into(),
        Err(e) => {
            let err: &(dyn std::error::Error + 'static) = e.as_ref();
            if is_broken_pipe(err) {
                return ExitStatus::Success.into();
            }
            if is_interrupted(err) {
                return ExitStatus::Interrupted.into();
            }
            print_error(err);
            ExitStatus::Error.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_worst() {
        use ExitStatus::*;
        assert_eq!(Success.merge(Negative), Negative);
        assert_eq!(Error.merge(Negative), Error);
        assert_eq!(Negative.merge(Interrupted), Interrupted);
        assert_eq!(Success.merge(Success), Success);
        assert_eq!(ExitCode::from(Error), ExitCode::from(2));
    }

    #[test]
    fn broken_pipe_is_success() {
        let e = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed");
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(crate::render::Error::Io(e));
        assert_eq!(
            report::<Box<dyn std::error::Error + Send + Sync>>(Err(boxed)),
            ExitCode::from(0)
        );
    }
}
