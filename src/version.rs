//! What gemctl is: its version and the git commit it was built from (by build.rs:
//! `git rev-parse --short HEAD`, or `unknown` when built without git).

/// The crate's version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit gemctl was built from, or `unknown`.
pub const COMMIT: &str = env!("GEMCTL_COMMIT");

/// What `gemctl --version` prints after the name: `0.1.0 (commit 1a2b3c4)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GEMCTL_COMMIT"),
    ")"
);
