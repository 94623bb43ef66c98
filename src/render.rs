//! Plans and refusals for humans: the text `gemctl diff` prints.

use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use crate::desired::{self, Role};
use crate::labels;
use crate::observed::{Container, Observed};
use crate::plan::{Action, Mark, Plan, PlanKind, Refusal};
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
        for line in diff.lines() {
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

/// Unified diffs of the containers that change role-holder: the one running now
/// (observed) against the one the plan makes (desired).
fn container_diffs(plan: &Plan, spec: &Spec, observed: &Observed) -> Vec<String> {
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
        let current = current_container(observed, spec, role, plan.live);
        let old_text = current.map(observed_text).unwrap_or_default();
        let old_name = current.map_or("(none)".to_string(), |c| c.name.clone());
        let want = match role {
            Role::App => desired::app(spec, plan.target),
            Role::Db => desired::db(spec, plan.target),
        };
        let new_text = desired_text(&want);
        let diff = TextDiff::from_lines(&old_text, &new_text);
        if diff.iter_all_changes().all(|c| c.tag() == ChangeTag::Equal) {
            continue;
        }
        diffs.push(
            diff.unified_diff()
                .context_radius(10)
                .header(
                    &format!("{old_name} (observed)"),
                    &format!("{} (desired)", want.name),
                )
                .to_string(),
        );
    }
    diffs
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

fn observed_text(c: &Container) -> String {
    let mut t = format!("name: {}\nimage: {}\nstate: {}\n", c.name, c.image, c.state);
    if c.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_APP) {
        let exposure = c.labels.get(labels::EXPOSURE).map_or("?", String::as_str);
        let _ = writeln!(t, "exposure: {exposure}");
    }
    // Docker lists IPv6 bindings too; the spec's syntax has no such twin.
    for p in c
        .ports
        .iter()
        .filter(|p| !p.starts_with("::") && !p.starts_with('['))
    {
        let _ = writeln!(t, "port: {p}");
    }
    let hash = c.labels.get(labels::SPEC_HASH).map_or("?", String::as_str);
    let _ = writeln!(t, "spec-hash: {hash}");
    t
}

fn desired_text(c: &desired::ContainerConfig) -> String {
    let mut t = format!("name: {}\nimage: {}\nstate: running\n", c.name, c.image);
    if c.role == Role::App {
        let _ = writeln!(t, "exposure: {}", labels::EXPOSURE_PUBLIC);
    }
    for raw in &c.ports {
        match crate::spec::PortMapping::parse(raw) {
            Ok(p) => {
                let _ = writeln!(
                    t,
                    "port: {}:{}->{}/{}",
                    p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                    p.host_port.map_or("*".to_string(), |h| h.to_string()),
                    p.container_port,
                    p.proto
                );
            }
            Err(_) => {
                let _ = writeln!(t, "port: {raw}");
            }
        }
    }
    let _ = writeln!(t, "spec-hash: {}", c.spec_hash());
    t
}

/// A refusal for humans.
pub fn refusal_text(refusal: &Refusal, style: Style) -> String {
    format!(
        "{} {}",
        style.paint("31", "refused:"),
        refusal.to_string().trim_end()
    ) + "\nNothing was touched.\n"
}
