//! `gemctl completions SHELL`: completion scripts generated from the same clap
//! definitions as `--help`, so they never drift.

use std::io::Write;
use std::path::Path;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use crate::error::{Error, exit};

/// Print a completion script for SHELL (commands, options, their values)
///
/// Load it for this shell session, or install it for good:
///
///   bash:  source <(gemctl completions bash)
///          gemctl completions bash > /etc/bash_completion.d/gemctl
///   zsh:   gemctl completions zsh > "${fpath[1]}/_gemctl"   (then start a new shell)
///   fish:  gemctl completions fish > ~/.config/fish/completions/gemctl.fish
///
/// Exit codes: 0 printed, 1 error.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(super) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub(super) fn completions(args: CompletionsArgs) -> Result<u8, Error> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "gemctl", &mut script);
    write_stdout(&script)?;
    Ok(exit::OK)
}

/// Writes generated text to stdout as it is (no colour handling: there is none
/// in it); a closed pipe (`gemctl man | head`) is not an error.
pub(super) fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io(Path::new("stdout"), "write", e))
        }
        _ => Ok(()),
    }
}
