//! `gemctl diff`: the plan that would move the host to the spec, with each changed
//! container's settings as a unified diff, for humans or as JSON. Also the text of
//! a refusal, which `apply` prints too.

use std::fmt::Write;
use std::path::PathBuf;

use anstyle::{AnsiColor, Style};
use clap::Args;
use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use super::{Output, json, observe_engine, print};
use crate::desired::{self, Role};
use crate::error::{Error, exit};
use crate::labels;
use crate::observed::{Container, Observation, Observed};
use crate::plan::{self, Action, Mark, Plan, PlanKind, PlanOptions, Refusal};
use crate::settings::{Change, Settings, Unrecorded};
use crate::spec::{EnvFiles, Spec};

const EXIT_CODES_DIFF: &str = "\
Exit codes:
  0  in sync: the host already matches the spec
  2  changes pending: `gemctl apply` would act
  3  refused: unrecognised containers or an unsafe state (or the desired
     generation failed before and is held back); a human must look
  1  any other error (bad spec or arguments, engine unreachable)";

/// Show the ordered plan that would move the host to the spec.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_DIFF)]
pub(super) struct DiffArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Plan against a saved observation (from `gemctl observe`) instead of the
    /// engine; the spec's env files need not be on this machine.
    #[arg(long, value_name = "FILE")]
    observed: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Plan as if a generation that failed its health checks may be tried again.
    #[arg(long)]
    retry: bool,
    /// Also save the plan, with a fingerprint of what it was computed from, for
    /// `gemctl apply FILE` to carry out exactly (or refuse as stale).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(super) fn run(args: DiffArgs) -> Result<u8, Error> {
    let DiffArgs {
        file,
        observed,
        output,
        retry,
        out,
    } = args;
    let env_files = if observed.is_some() {
        EnvFiles::Skip
    } else {
        EnvFiles::Check
    };
    let spec = Spec::load_with(&file, env_files)?;
    let observation = match observed {
        Some(path) => crate::observe::read_saved(&path)?,
        None => observe_engine(&spec)?,
    };
    let options = PlanOptions {
        retry_failed: retry,
    };
    let code = show(&spec, &observation, output, options)?;
    if let Some(out) = out {
        save(&spec, &file, &observation, options, &out, output)?;
    }
    Ok(code)
}

/// Writes the plan and its basis to `out` (a refusal is not a plan: nothing is
/// written, and the verdict already said why).
fn save(
    spec: &Spec,
    file: &std::path::Path,
    observation: &Observation,
    options: PlanOptions,
    out: &std::path::Path,
    output: Output,
) -> Result<(), Error> {
    let Ok(plan) = plan::plan(spec, &observation.observed, &observation.history, options) else {
        return Err(Error::Usage(format!(
            "the plan is refused: nothing was saved to {}",
            out.display()
        )));
    };
    let basis = crate::saved_plan::Basis::of(spec, observation, options.retry_failed);
    let saved = crate::saved_plan::SavedPlan::new(file, basis, plan);
    let text = serde_json::to_string_pretty(&saved).expect("a plan serialises") + "\n";
    crate::state::write_atomic(out, text.as_bytes())?;
    if output == Output::Text {
        eprintln!(
            "plan saved to {}: `gemctl apply {}` carries out exactly these steps, or refuses \
             if the host or the spec changed meanwhile",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// Plans and prints the plan (or the refusal); the exit code is the verdict.
pub(super) fn show(
    spec: &Spec,
    observation: &Observation,
    output: Output,
    options: PlanOptions,
) -> Result<u8, Error> {
    let result = plan::plan(spec, &observation.observed, &observation.history, options);
    let code = match &result {
        Err(_) => exit::REFUSED,
        Ok(p) if p.steps.is_empty() && p.hold.is_some() => exit::REFUSED,
        Ok(p) if p.steps.is_empty() => exit::OK,
        Ok(_) => exit::CHANGES,
    };
    match output {
        Output::Json => {
            let doc = match &result {
                Ok(p) => {
                    let diffs = container_diffs(p, spec, &observation.observed);
                    let changes: Vec<serde_json::Value> = diffs
                        .iter()
                        .flat_map(|d| {
                            d.changes.iter().map(|c| {
                                serde_json::json!({
                                    "container": d.container,
                                    "field": c.field,
                                    "from": c.from,
                                    "to": c.to,
                                })
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "sync": if p.steps.is_empty() { "in_sync" } else { "changes_pending" },
                        "status": if p.steps.is_empty() { "in_sync" } else { "changes" },
                        "exit_code": code,
                        "plan": p,
                        "summary": p.summary(),
                        "changes": changes,
                        "container_diffs": diffs,
                        "preview": observation.observed.storage.preview,
                    })
                }
                Err(r) => serde_json::json!({
                    "sync": "refused",
                    "status": "refused",
                    "exit_code": code,
                    "refusal": r,
                }),
            };
            print(&json(&doc))?;
        }
        Output::Text => match &result {
            Ok(p) => print(&plan_text(p, spec, &observation.observed))?,
            Err(r) => print(&refusal_text(r))?,
        },
    }
    Ok(code)
}

// The text is always styled; `print` (anstream) drops the styles unless stdout is
// a terminal and `NO_COLOR` is unset.
const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

fn mark(m: Mark) -> String {
    let style = match m {
        Mark::Add => GREEN,
        Mark::Remove => RED,
        Mark::Change => YELLOW,
    };
    paint(style, &m.symbol().to_string())
}

fn generation_label(g: Option<u64>) -> String {
    g.map_or("none".to_string(), |n| n.to_string())
}

/// The header, the numbered steps, the container diffs and the summary line.
pub fn plan_text(plan: &Plan, spec: &Spec, observed: &Observed) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(
            BOLD,
            &format!(
                "project {}: live generation {}, spec wants generation {}",
                plan.project,
                generation_label(plan.live),
                plan.desired
            )
        )
    );
    let kind = match plan.kind {
        PlanKind::InSync => "in sync".to_string(),
        PlanKind::Bootstrap => format!("bootstrap generation {}", plan.target),
        PlanKind::Upgrade { from } => format!("upgrade {from} → {}", plan.target),
        PlanKind::Rollback { from } => format!("rollback {from} → {}", plan.target),
        PlanKind::Repair => format!("repair generation {}", plan.target),
        PlanKind::Restore => format!("restore a backup into generation {}", plan.target),
    };
    let _ = writeln!(out, "{kind}");
    if let Some(r) = &observed.storage.preview {
        let _ = writeln!(out, "preview: {}", r.describe());
    }
    if let Some(copy) = &plan.copy {
        let _ = writeln!(out, "copy mode: {} ({})", copy.mode, copy.reason);
    }
    if let Some(pin) = &plan.pinned {
        let _ = writeln!(out, "{} {pin}", paint(YELLOW, "pinned:"));
    }
    if let Some(hold) = &plan.hold {
        let _ = writeln!(out, "{} {hold}", paint(YELLOW, "held:"));
    }
    for note in &plan.notes {
        let _ = writeln!(out, "{} {note}", paint(YELLOW, "note:"));
    }
    if plan.steps.is_empty() {
        let _ = writeln!(out, "\nNothing to do.");
        return out;
    }
    let _ = writeln!(out);
    let width = plan.steps.len().to_string().len();
    for (i, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>width$}. {} {}",
            i + 1,
            mark(step.action.mark()),
            step.action.describe()
        );
        let _ = writeln!(out, "{:>width$}     {}", "", paint(DIM, &step.reason));
    }
    for diff in container_diffs(plan, spec, observed) {
        let _ = writeln!(out);
        if let Some(note) = &diff.note {
            let _ = writeln!(out, "{} {note}", paint(YELLOW, "note:"));
        }
        for line in diff.text.lines() {
            let painted = match line.chars().next() {
                Some('+') => paint(GREEN, line),
                Some('-') => paint(RED, line),
                Some('@') => paint(CYAN, line),
                _ => line.to_string(),
            };
            let _ = writeln!(out, "{painted}");
        }
    }
    let _ = writeln!(out, "\n{}", paint(BOLD, &plan.summary().to_string()));
    out
}

/// What changes in one container: the settings the one running now was made from
/// against those of the container the plan makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerDiff {
    /// The container the plan makes.
    pub container: String,
    /// The one running now in its role, if any.
    pub was: Option<String>,
    /// Set when the running one recorded no readable settings: what can be said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Field by field (only the image when the running one recorded no settings).
    pub changes: Vec<Change>,
    /// A unified diff of the settings as `field: value` lines.
    pub text: String,
}

/// The containers the plan makes, each against the one running now in its role,
/// when their settings differ. Secrets never appear: settings hold none.
pub fn container_diffs(plan: &Plan, spec: &Spec, observed: &Observed) -> Vec<ContainerDiff> {
    let touches = |role: Role| {
        plan.steps.iter().any(|s| match &s.action {
            Action::CreateDb { generation, .. } => role == Role::Db && *generation == plan.target,
            Action::CreateAppProbe { generation, .. } | Action::ExposeApp { generation, .. } => {
                role == Role::App && *generation == plan.target
            }
            _ => false,
        })
    };
    let db = plan
        .steps
        .iter()
        .find_map(|s| match s.action {
            Action::ShareDb { generation, db } if generation == plan.target => Some(db),
            _ => None,
        })
        .unwrap_or_else(|| crate::state::db_generation(&spec.storage, plan.target));
    let mut pairs: Vec<(desired::ContainerConfig, Option<&Container>)> = Vec::new();
    for role in [Role::App, Role::Db] {
        if !touches(role) {
            continue;
        }
        let want = match role {
            Role::App => desired::app_on(spec, plan.target, db),
            _ => desired::db(spec, plan.target),
        };
        pairs.push((want, current_container(observed, spec, role, plan.live)));
    }
    // Each service replica the plan makes, against the same replica of the live
    // generation's service.
    for want in desired::services_on(spec, plan.target, db) {
        let made = plan.steps.iter().any(|s| {
            matches!(&s.action, Action::CreateService { container, .. } if *container == want.name)
        });
        if made {
            let current = current_replica(observed, spec, &want, plan.live);
            pairs.push((want, current));
        }
    }
    let mut diffs = Vec::new();
    for (want, current) in pairs {
        let wanted = Settings::of(&want);
        let (old_text, new_text, changes, note) = match current {
            None => (String::new(), wanted.text(), wanted.added(), None),
            Some(c) => match Settings::recorded(c) {
                Ok(made) => (made.text(), wanted.text(), made.changes(&wanted), None),
                Err(why) => unrecorded(c, &want, &why),
            },
        };
        let diff = TextDiff::from_lines(&old_text, &new_text);
        if diff.iter_all_changes().all(|c| c.tag() == ChangeTag::Equal) {
            continue;
        }
        let was = current.map(|c| c.name.clone());
        let text = diff
            .unified_diff()
            .context_radius(10)
            .header(
                &format!("{} (observed)", was.as_deref().unwrap_or("(none)")),
                &format!("{} (desired)", want.name),
            )
            .to_string();
        diffs.push(ContainerDiff {
            container: want.name,
            was,
            note,
            changes,
            text,
        });
    }
    diffs
}

/// The diff of a container that recorded no readable settings: only its image and
/// fingerprint are known, and a note says so.
fn unrecorded(
    c: &Container,
    want: &desired::ContainerConfig,
    why: &Unrecorded,
) -> (String, String, Vec<Change>, Option<String>) {
    let (what, changes) = if c.image == want.image {
        ("only the fingerprint differs", Vec::new())
    } else {
        (
            "only the image and the fingerprint can be compared",
            vec![Change {
                field: "image".into(),
                from: Some(c.image.clone()),
                to: Some(want.image.clone()),
            }],
        )
    };
    let hash = c.labels.get(labels::SPEC_HASH).map_or("?", String::as_str);
    (
        format!("image: {}\nspec-hash: {hash}\n", c.image),
        format!("image: {}\nspec-hash: {}\n", want.image, want.spec_hash()),
        changes,
        Some(format!("{} was {why}; {what}", c.name)),
    )
}

/// The live generation's container of the same service and replica as `want`.
fn current_replica<'a>(
    observed: &'a Observed,
    spec: &Spec,
    want: &desired::ContainerConfig,
    live: Option<u64>,
) -> Option<&'a Container> {
    let of = want.service.as_ref()?;
    let live = live?.to_string();
    let replica = of.replica.to_string();
    observed.containers.iter().find(|c| {
        let label = |k: &str| c.labels.get(k).map(String::as_str);
        label(labels::PROJECT) == Some(spec.project.as_str())
            && label(labels::GENERATION) == Some(live.as_str())
            && label(labels::SERVICE) == Some(of.name.as_str())
            && label(labels::REPLICA) == Some(replica.as_str())
    })
}

fn current_container<'a>(
    observed: &'a Observed,
    spec: &Spec,
    role: Role,
    live: Option<u64>,
) -> Option<&'a Container> {
    let name = desired::container_name(spec, role, live?);
    observed
        .containers
        .iter()
        .find(|c| c.name == name && c.labels.get(labels::PROJECT) == Some(&spec.project))
}

/// A refusal for humans.
pub fn refusal_text(refusal: &Refusal) -> String {
    format!(
        "{} {}",
        paint(RED, "refused:"),
        refusal.to_string().trim_end()
    ) + "\nNothing was touched.\n"
}
