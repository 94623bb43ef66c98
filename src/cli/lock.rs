//! `gemctl unpin` and `gemctl unlock`, and the project's lock and pin as every
//! writing command takes or lapses them.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Output, json, print};
use crate::error::{Error, exit};
use crate::spec::Spec;

/// Remove the pin `gemctl rollback` or `gemctl restore` set, so the host
/// follows the spec again.
///
/// Exit codes: 0 removed or no pin, 1 error.
#[derive(Debug, Args)]
pub(super) struct UnpinArgs {
    /// The spec file (names the storage root).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl UnpinArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

/// Remove the project's lock by force, after a human has made sure the gemctl
/// holding it is gone.
///
/// A lock left by a process that died on this host is taken over by the next
/// apply on its own; this is for the other cases (a holder on another host
/// sharing the storage, an unreadable lock). Asks to type the project name,
/// unless --yes. Exit codes: 0 removed or no lock, 1 not confirmed or error.
#[derive(Debug, Args)]
pub(super) struct UnlockArgs {
    /// The spec file (names the storage root).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl UnlockArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        &self.file
    }
}

pub(super) fn unpin(args: UnpinArgs) -> Result<u8, Error> {
    let UnpinArgs { file, output } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let _lock = take_lock(&spec)?;
    let removed = crate::state::clear_pin(&spec.storage)?;
    if output == Output::Json {
        print(&json(&serde_json::json!({
            "project": spec.project,
            "unpinned": removed,
            "exit_code": exit::OK,
        })))?;
    } else if removed {
        print(&format!(
            "project {}: pin removed; the host follows the spec (generation {}) again: \
             `gemctl diff` shows what apply would do\n",
            spec.project, spec.generation
        ))?;
    } else {
        print(&format!("project {}: not pinned\n", spec.project))?;
    }
    Ok(exit::OK)
}

pub(super) fn unlock(args: UnlockArgs) -> Result<u8, Error> {
    let UnlockArgs { file, yes, output } = args;
    let spec = Spec::load_with(&file, crate::spec::EnvFiles::Skip)?;
    let path = crate::lock::path(&spec.storage);
    let done = |removed: bool, holder: Option<String>| -> Result<u8, Error> {
        if output == Output::Json {
            print(&json(&serde_json::json!({
                "project": spec.project,
                "removed": removed,
                "holder": holder,
                "exit_code": exit::OK,
            })))?;
        }
        Ok(exit::OK)
    };
    let who = match crate::lock::holder(&spec.storage) {
        None => {
            if output == Output::Text {
                print(&format!("project {}: not locked\n", spec.project))?;
            }
            return done(false, None);
        }
        Some(Ok(h)) => h.to_string(),
        Some(Err(text)) => format!("an unreadable lock ({})", text.trim()),
    };
    if output == Output::Text {
        print(&format!("project {} is locked by {who}\n", spec.project))?;
    }
    if !yes {
        print(&format!(
            "If that gemctl is still running, removing its lock lets two writers collide.\n\
             Type the project name ({}) to remove the lock: ",
            spec.project
        ))?;
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != spec.project {
            return Err(Error::Usage("not confirmed: the lock is kept".into()));
        }
    }
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
    if output == Output::Text {
        print("lock removed\n")?;
    }
    done(true, Some(who))
}

/// Takes the project's lock for this command, saying so when it took over one
/// left by a process that is gone.
pub(super) fn take_lock(spec: &Spec) -> Result<crate::lock::Lock, Error> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let lock = crate::lock::acquire(&spec.storage, &command)?;
    if let Some(stale) = &lock.took_over {
        let _ = writeln!(
            std::io::stderr(),
            "note: took over a stale lock left by {stale} (that process is gone)"
        );
    }
    Ok(lock)
}

/// A pin made while the spec named another generation no longer applies: remove it.
pub(super) fn lapse_stale_pin(spec: &Spec) -> Result<(), Error> {
    if let Some(pin) = crate::state::read_storage(&spec.storage)?.pin
        && !pin.applies(spec.generation.0)
        && crate::state::clear_pin(&spec.storage)?
    {
        let _ = writeln!(
            std::io::stderr(),
            "note: the pin to generation {} lapsed: the spec's generation moved from {} to {}",
            pin.generation,
            pin.spec_generation,
            spec.generation
        );
    }
    Ok(())
}
