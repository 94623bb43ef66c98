//! gemctl's errors: each says what was seen and what to do, and maps to an exit code.

use std::path::{Path, PathBuf};

use crate::engine::EngineError;
use crate::spec_error::SpecErrors;

/// Exit codes, stable for scripts.
pub mod exit {
    /// In sync / converged / success.
    pub const OK: u8 = 0;
    /// Any other error: bad spec, engine unreachable, I/O.
    pub const ERROR: u8 = 1;
    /// `diff`: changes are pending.
    pub const CHANGES: u8 = 2;
    /// Refused: unrecognised or unsafe state, nothing touched.
    pub const REFUSED: u8 = 3;
    /// `apply`: the new generation failed (its health checks or any step of it); it was
    /// removed and the previous one serves (again).
    pub const ROLLED_BACK: u8 = 4;
}

/// Everything that can go wrong outside the planner's own verdicts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec does not parse or validate.
    #[error("{0}")]
    Spec(#[from] SpecErrors),
    /// The engine failed or is unreachable.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What gemctl was doing.
        action: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad arguments or input files.
    #[error("{0}")]
    Usage(String),
    /// An apply step failed; the message says what state the host is in.
    #[error("{0}")]
    Apply(String),
    /// A step of a plan failed: which one, then why.
    #[error("step {index}/{total} ({step}) failed: {source}")]
    Step {
        /// 1-based position in its plan.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The step's description.
        step: String,
        /// Why it failed.
        source: Box<Error>,
    },
    /// An error, and what else went wrong while handling it (recording it, writing
    /// a report): shown after the cause, never instead of it.
    #[error("{source}{}", also.iter().map(|a| format!("\nalso: {a}")).collect::<String>())]
    Also {
        /// The cause.
        source: Box<Error>,
        /// The secondary errors.
        also: Vec<String>,
    },
}

impl Error {
    /// An I/O error with its path and what was being done.
    pub fn io(path: &Path, action: &str, source: std::io::Error) -> Error {
        Error::Io {
            action: action.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn code(&self) -> u8 {
        match self {
            Error::Step { source, .. } | Error::Also { source, .. } => source.code(),
            _ => exit::ERROR,
        }
    }
}
