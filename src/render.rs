//! Plans and refusals for humans: the text `gemctl diff` prints.

use std::fmt::Write;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::desired::{self, Role};
use crate::labels;
use crate::observed::{Container, Observed};
use crate::plan::{Action, Mark, Plan, PlanKind, Refusal};
use crate::settings::{Change, Settings, Unrecorded};
use crate::spec::Spec;

/// Whether to colour output: only on a terminal, and never with `NO_COLOR` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on.
    pub color: bool,
}

impl Style {
    /// Colour when `is_terminal` and `NO_COLOR` is unset or empty.
    pub fn detect(is_terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: is_terminal && !no_color,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn mark(&self, m: Mark) -> String {
        let code = match m {
            Mark::Add => "32",
            Mark::Remove => "31",
            Mark::Change => "33",
        };
        self.paint(code, &m.symbol().to_string())
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

fn generation_label(g: Option<u64>) -> String {
    g.map_or("none".to_string(), |n| n.to_string())
}

/// The header, the numbered steps, the container diffs and the summary line.
pub fn plan_text(plan: &Plan, spec: &Spec, observed: &Observed, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold(&format!(
            "project {}: live generation {}, spec wants generation {}",
            plan.project,
            generation_label(plan.live),
            plan.desired
        ))
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
    if let Some(pin) = &plan.pinned {
        let _ = writeln!(out, "{} {pin}", style.paint("33", "pinned:"));
    }
    if let Some(hold) = &plan.hold {
        let _ = writeln!(out, "{} {hold}", style.paint("33", "held:"));
    }
    for note in &plan.notes {
        let _ = writeln!(out, "{} {note}", style.paint("33", "note:"));
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
            style.mark(step.action.mark()),
            step.action.describe()
        );
        let _ = writeln!(out, "{:>width$}     {}", "", style.dim(&step.reason));
    }
    for diff in container_diffs(plan, spec, observed) {
        let _ = writeln!(out);
        if let Some(note) = &diff.note {
            let _ = writeln!(out, "{} {note}", style.paint("33", "note:"));
        }
        for line in diff.text.lines() {
            let painted = match line.chars().next() {
                Some('+') => style.paint("32", line),
                Some('-') => style.paint("31", line),
                Some('@') => style.paint("36", line),
                _ => line.to_string(),
            };
            let _ = writeln!(out, "{painted}");
        }
    }
    let _ = writeln!(out, "\n{}", style.bold(&plan.summary().to_string()));
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
    let mut diffs = Vec::new();
    for role in [Role::App, Role::Db] {
        if !touches(role) {
            continue;
        }
        let want = match role {
            Role::App => desired::app(spec, plan.target),
            Role::Db => desired::db(spec, plan.target),
        };
        let wanted = Settings::of(&want);
        let current = current_container(observed, spec, role, plan.live);
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
pub fn refusal_text(refusal: &Refusal, style: Style) -> String {
    format!(
        "{} {}",
        style.paint("31", "refused:"),
        refusal.to_string().trim_end()
    ) + "\nNothing was touched.\n"
}
