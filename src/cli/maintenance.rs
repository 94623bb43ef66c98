//! `gemctl maintenance on|off`: the front door answers every request with the
//! maintenance answer, or forwards again.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::lock::take_lock;
use super::{Output, json, print, runtime};
use crate::error::{Error, exit};
use crate::front::{self, FrontState, Maintenance};
use crate::spec::{EnvFiles, Spec};

/// Put the front door in maintenance, or take it out.
///
/// In maintenance, HTTP ports answer 503 with `Retry-After` and a small page
/// carrying the message, TCP ports answer one line `MAINT <message>` and close;
/// the front's health (`/__gemctl/front` on HTTP ports) stays 200, so a balancer
/// in front of the host keeps it. No container stops; a deploy can run
/// meanwhile. The setting is kept in `<storage>/.gemctl/front/` and survives a
/// restart of the front. Needs a `front:` in the spec.
///
/// Exit codes: 0 done, 1 error (no front in the spec, the front not running: the
/// setting is saved and takes effect when it starts).
#[derive(Debug, Args)]
pub(super) struct MaintenanceArgs {
    #[command(subcommand)]
    switch: Switch,
}

impl MaintenanceArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &std::path::Path {
        match &self.switch {
            Switch::On(on) => &on.file,
            Switch::Off(off) => &off.file,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Switch {
    /// Answer every request with the maintenance page (503) or line.
    On(OnArgs),
    /// Forward requests to the live generation's app again.
    Off(OffArgs),
}

#[derive(Debug, Args)]
struct OnArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// The message on the page (one line; shown as text, not HTML).
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "The service is down for maintenance and will be back shortly."
    )]
    message: String,
    /// The `Retry-After` the page carries (`30s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    retry_after: Duration,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Args)]
struct OffArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(super) fn run(args: MaintenanceArgs) -> Result<u8, Error> {
    let (file, output, maintenance) = match args.switch {
        Switch::On(on) => (
            on.file,
            on.output,
            Some(Maintenance {
                message: on.message,
                retry_after_secs: on.retry_after.as_secs().max(1),
                since: crate::state::now_rfc3339(),
            }),
        ),
        Switch::Off(off) => (off.file, off.output, None),
    };
    let spec = Spec::load_with(&file, EnvFiles::Skip)?;
    let Some(front_spec) = &spec.front else {
        return Err(Error::Usage(format!(
            "{} has no `front:`: maintenance is answered by the front door (see README, \
             \"The front door\")",
            file.display()
        )));
    };
    let _lock = take_lock(&spec)?;
    let before = crate::state::read_front(&spec.storage)?;
    let next = FrontState {
        maintenance: maintenance.clone(),
        ..before
    };
    crate::state::write_front(&spec.storage, &spec, front_spec, &next)?;
    runtime()?.block_on(async {
        for command in front::map_commands(&next) {
            crate::front_api::command(&spec.storage, &command)
                .await
                .map_err(|e| {
                    Error::Apply(format!(
                        "{e}. The setting is saved in {}: the front takes it when it starts \
                         (`gemctl apply` starts a stopped front)",
                        front::dir(&spec.storage).display()
                    ))
                })?;
        }
        Ok::<(), Error>(())
    })?;
    if output == Output::Json {
        print(&json(&serde_json::json!({
            "project": spec.project,
            "maintenance": maintenance,
            "exit_code": exit::OK,
        })))?;
        return Ok(exit::OK);
    }
    print(&match maintenance {
        Some(m) => format!(
            "project {}: the front answers in maintenance ({:?}, Retry-After {}s); \
             `gemctl maintenance off -f {}` forwards again\n",
            spec.project,
            m.message,
            m.retry_after_secs,
            file.display()
        ),
        None => format!(
            "project {}: maintenance off, the front forwards to the live app\n",
            spec.project
        ),
    })?;
    Ok(exit::OK)
}
