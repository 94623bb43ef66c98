//! `gemctl preview` and `gemctl apply --check`: the spec's generation run on a
//! throwaway copy of live data, beside the live generation (see
//! [`crate::throwaway`]). A preview stays for testers; a check is reported and
//! discarded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::lock::take_lock;
use super::{Output, json, print, runtime};
use crate::error::{Error, exit};
use crate::spec::Spec;
use crate::throwaway::{self, Kind, Started};

const EXIT_CODES_PREVIEW: &str = "\
Exit codes:
  0  the preview is up and passed its checks (or --discard removed it)
  3  refused: no live generation to copy, or the spec asks for no newer one
  4  the preview failed its checks; it is kept for a look (its logs are in
     the output): `gemctl preview --discard` removes it
  1  any other error (bad spec, engine unreachable, the copy failed, another
     gemctl holds the project's lock)";

/// Run the spec's generation on a fresh copy of live data, for testers.
///
/// The live database is copied while it serves (a base backup; the live
/// generation is only read), then the spec's services and app start on the
/// copy — `<project>-preview-db`, `-app`, `-<service>`, their data in
/// <storage>/preview — and are health-checked; the app answers on
/// `preview.ports`. Nothing of the preview is live or retained, and the live
/// generation is untouched. The project's lock is held only while the data is
/// copied and the copy catches up and is promoted (it then needs nothing of the
/// live database). `gemctl status` shows the preview, its age and the live data
/// position it was copied from. `gemctl apply` of a new generation discards it
/// (testers' writes are not production's) and builds the generation from live
/// data as it is then.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_PREVIEW)]
pub(super) struct PreviewArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Take a fresh copy (the preview's containers and data are made again).
    #[arg(long, conflicts_with = "discard")]
    refresh: bool,
    /// Remove the preview: its containers and its data.
    #[arg(long)]
    discard: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl PreviewArgs {
    /// The spec file.
    pub(super) fn spec_file(&self) -> &Path {
        &self.file
    }
}

pub(super) fn run(args: PreviewArgs) -> Result<u8, Error> {
    let PreviewArgs {
        file,
        refresh,
        discard,
        output,
    } = args;
    let spec = Spec::load(&file)?;
    crate::docker::Docker::local_endpoint()?;
    // Held until this command ends: an apply waits for a preview being made.
    let _in_use = throwaway::hold(
        &spec,
        Kind::Preview,
        if discard {
            "preview --discard"
        } else {
            "preview"
        },
    )?;
    if discard {
        let removed = runtime()?.block_on(async {
            let docker = crate::docker::Docker::connect().await?;
            throwaway::discard(&docker, &spec, Kind::Preview).await
        })?;
        match output {
            Output::Json => print(&json(
                &serde_json::json!({ "discarded": removed, "exit_code": exit::OK }),
            ))?,
            Output::Text if removed.is_empty() => print(&format!(
                "project {}: there is no preview to discard\n",
                spec.project
            ))?,
            Output::Text => print(&format!(
                "project {}: discarded the preview ({})\n",
                spec.project,
                removed.join(", ")
            ))?,
        }
        return Ok(exit::OK);
    }
    if spec.preview.as_ref().is_none_or(|p| p.ports.is_empty()) {
        return Err(Error::Usage(
            "a preview needs ports of its own for testers: add `preview: { ports: \
             [\"127.0.0.1:19080:8080\"] }` to the spec (Docker's port syntax, other host \
             ports than the public ones)"
                .into(),
        ));
    }
    if !refresh
        && let Some(record) = throwaway::read_record(&spec, Kind::Preview)
        && record.generation == spec.generation.0
        && record.healthy == Some(true)
    {
        let text = format!(
            "project {}: a preview of generation {} is up, copied from generation {} at {} \
             ({}); `--refresh` takes a fresh copy, `--discard` removes it\n",
            spec.project, record.generation, record.from, record.from_lsn, record.copied_at
        );
        match output {
            Output::Json => print(&json(
                &serde_json::json!({ "preview": record, "exit_code": exit::OK }),
            ))?,
            Output::Text => print(&text)?,
        }
        return Ok(exit::OK);
    }
    if let Some(code) = refuse_unless_newer(&spec, "preview", output)? {
        return Ok(code);
    }
    let started = make(&spec, Kind::Preview, output)?;
    let code = if started.health.healthy {
        exit::OK
    } else {
        exit::ROLLED_BACK
    };
    match output {
        Output::Json => print(&json(&serde_json::json!({
            "preview": started.record,
            "health": started.health,
            "logs": started.logs,
            "exit_code": code,
        })))?,
        Output::Text => print(&started_text(&spec, &started))?,
    }
    Ok(code)
}

/// Exit 3 (said on stdout) when the spec asks for no generation newer than the
/// live one: a preview or a check is of the next release.
fn refuse_unless_newer(spec: &Spec, what: &str, output: Output) -> Result<Option<u8>, Error> {
    let live = crate::state::read_storage(&spec.storage)?.live;
    let why = match live {
        None => format!(
            "project {} has no live generation on this host: a {what} runs the next release \
             on a copy of live data (`gemctl apply` first)",
            spec.project
        ),
        Some(l) if l >= spec.generation.0 => format!(
            "the spec asks for generation {}, and generation {l} is live: a {what} is of a \
             newer generation (bump `generation`)",
            spec.generation
        ),
        Some(_) => return Ok(None),
    };
    match output {
        Output::Json => print(&json(
            &serde_json::json!({ "refused": why, "exit_code": exit::REFUSED }),
        ))?,
        Output::Text => print(&format!("refused: {why}\nNothing was touched.\n"))?,
    }
    Ok(Some(exit::REFUSED))
}

/// Copies live data and detaches the copy (started, caught up, promoted, its slot
/// dropped) under the project's lock, then starts and checks the services and
/// app on it without the lock.
fn make(spec: &Spec, kind: Kind, output: Output) -> Result<Started, Error> {
    let mut say = |m: String| {
        if output == Output::Text {
            let _ = writeln!(std::io::stderr(), "  {m}");
        }
    };
    let lock = take_lock(spec)?;
    let started = Instant::now();
    runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        let record = throwaway::copy_live(&docker, spec, kind, &mut say).await?;
        let detached = throwaway::detach(&docker, spec, &record, &mut say).await;
        drop(lock);
        let failed = |e: Error| Started {
            record: record.clone(),
            health: throwaway::failed_outcome(&format!("starting the {}", kind.name()), &e),
            logs: Default::default(),
        };
        if let Err(e) = detached {
            return Ok(failed(e));
        }
        say(format!(
            "copied in {:.1}s and detached from the live database; starting the {} (the lock \
             is released)",
            record.copy_ms as f64 / 1000.0,
            kind.name()
        ));
        match throwaway::start(&docker, spec, record.clone(), started, &mut say).await {
            Ok(s) => Ok(s),
            Err(e) => Ok(failed(e)),
        }
    })
}

fn started_text(spec: &Spec, s: &Started) -> String {
    let r = &s.record;
    let mut text = if s.health.healthy {
        format!(
            "project {}: preview of generation {} is up on {} (copied from generation {} at \
             {}, ready in {:.1}s)\n",
            spec.project,
            r.generation,
            r.ports.join(", "),
            r.from,
            r.from_lsn,
            r.ready_ms.unwrap_or_default() as f64 / 1000.0
        )
    } else {
        format!(
            "project {}: the preview of generation {} FAILED its checks: {}\nIt is kept for a \
             look; `gemctl preview -f SPEC --discard` removes it.\n",
            spec.project,
            r.generation,
            s.health.summary()
        )
    };
    for (name, logs) in &s.logs {
        text.push_str(&format!("--- last lines of {name}\n{}\n", logs.trim_end()));
    }
    text
}

/// `gemctl apply --check`: the release checked on a throwaway copy of live data,
/// reported and discarded; the live generation untouched.
pub(super) fn check(spec: &Spec, output: Output) -> Result<u8, Error> {
    crate::docker::Docker::local_endpoint()?;
    let observation = super::observe_engine(spec)?;
    let plan = crate::plan::plan(
        spec,
        &observation.observed,
        &observation.history,
        crate::plan::PlanOptions::default(),
    );
    if let Err(refusal) = plan {
        match output {
            Output::Json => print(&json(
                &serde_json::json!({ "refusal": refusal, "exit_code": exit::REFUSED }),
            ))?,
            Output::Text => print(&super::diff::refusal_text(&refusal))?,
        }
        return Ok(exit::REFUSED);
    }
    if let Some(code) = refuse_unless_newer(spec, "deploy check", output)? {
        return Ok(code);
    }
    // Held until the check is discarded: an apply meanwhile leaves it alone.
    let _in_use = throwaway::hold(spec, Kind::Check, "apply --check")?;
    let started = make(spec, Kind::Check, output);
    let discarded = runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        throwaway::discard(&docker, spec, Kind::Check).await
    });
    let started = started?;
    discarded?;
    let code = if started.health.healthy {
        exit::OK
    } else {
        exit::ROLLED_BACK
    };
    let report = serde_json::json!({
        "kind": "check",
        "project": spec.project,
        "generation": started.record.generation,
        "from": started.record.from,
        "from_lsn": started.record.from_lsn,
        "passed": started.health.healthy,
        "health": started.health,
        "logs": started.logs,
        "copy_ms": started.record.copy_ms,
        "ready_ms": started.record.ready_ms,
        "exit_code": code,
    });
    let dir = crate::state::reports_dir(&spec.storage).join("checks");
    let path = dir.join(format!(
        "check-{}-{}.json",
        started.record.generation,
        crate::state::now_rfc3339().replace(':', "-")
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    crate::state::write_atomic(&path, json(&report).as_bytes())?;
    match output {
        Output::Json => print(&json(&report))?,
        Output::Text => {
            let mut text = if started.health.healthy {
                format!(
                    "check PASSED: generation {} passes its checks on a copy of generation {}'s \
                     data; nothing live was touched\n",
                    started.record.generation, started.record.from
                )
            } else {
                format!(
                    "check FAILED: generation {} would fail: {}\nNothing live was touched.\n",
                    started.record.generation,
                    started.health.summary()
                )
            };
            for (name, logs) in &started.logs {
                text.push_str(&format!("--- last lines of {name}\n{}\n", logs.trim_end()));
            }
            text.push_str(&format!("report: {}\n", path.display()));
            print(&text)?;
        }
    }
    Ok(code)
}
