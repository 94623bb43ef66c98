//! `gemctl observe`: what gemctl sees on the host, as JSON to plan against later.

use std::path::PathBuf;

use clap::Args;

use super::{json, observe_engine, print};
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Print what gemctl sees on the host as JSON: containers, networks, the
/// generations on storage and the failure history.
///
/// The output can be saved and planned against later with
/// `gemctl diff --observed FILE`, with no engine at all.
/// Uses the engine `docker ps` would (DOCKER_HOST, DOCKER_CONTEXT, the current
/// context), on this machine. Exit codes: 0 ok, 1 error.
#[derive(Debug, Args)]
pub(super) struct ObserveArgs {
    /// The spec file (names the storage root to read).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
}

pub(super) fn run(args: ObserveArgs) -> Result<u8, Error> {
    let spec = Spec::load(&args.file)?;
    let observation = observe_engine(&spec)?;
    print(&json(&observation))?;
    Ok(exit::OK)
}
