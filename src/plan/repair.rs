//! Repair: the target generation's data is ready and at the front, but its
//! containers drifted (stopped, removed, half-exposed); they are put right. A spec
//! changed without a new generation number is not drift but a refusal. Also the plan
//! for a failed generation with nothing to fall back to: only its leftovers go.

use crate::desired;
use crate::observed::Container;
use crate::settings::{Settings, Unrecorded};
use crate::spec::Spec;

use super::builder::Builder;
use super::evidence::Evidence;
use super::hold::Hold;
use super::recognise::{Gen, Host};
use super::{Plan, PlanKind, Problem, Refusal, refusal};

/// Keeps generation `target`, whose data is ready: its database (its own, or the
/// one it shares) runs.
pub(super) fn repair(b: &mut Builder, host: &Host, target: u64) {
    let db = host.db_gen(target);
    b.ensure_db_up(
        db,
        &host.generation(db),
        "the target generation's database must run",
    );
}

/// A spec changed without a new generation number: the running containers no
/// longer say what the spec says. (Rolling back to an older generation is the
/// exception: it runs as it was made, so this is not asked there.)
pub(super) fn spec_drift(spec: &Spec, host: &Host, target: u64, tgen: &Gen) -> Vec<Problem> {
    let next = host.newest_ready().unwrap_or(target).max(target) + 1;
    let mut problems = Vec::new();
    let db = host.db_gen(target);
    for (known, want) in [
        (tgen.app, desired::app_on(spec, target, db)),
        (host.generation(db).db, desired::db(spec, db)),
    ] {
        if let Some(k) = known
            && !desired::made_as(spec, &want, k.hash())
        {
            problems.push(Problem {
                container: Some(k.c.name.clone()),
                seen: format!(
                    "{} was made from a different spec for generation {target}: {}",
                    k.c.name,
                    what_changed(k.c, &want)
                ),
                fix: format!(
                    "bump `generation` to {next} to deploy the change as a new generation, \
                     or revert the spec to what generation {target} was made from"
                ),
            });
        }
    }
    problems.extend(super::services::spec_drift(spec, host, target, tgen, next));
    problems
}

/// The plan when the spec's generation failed and no generation can take over: what
/// the failed attempt left is cleared, and nothing else is done.
pub(super) fn clear_failed(
    spec: &Spec,
    evidence: Evidence,
    host: &Host,
    live: Option<u64>,
    hold: Hold,
) -> Result<Plan, Refusal> {
    let mut b = Builder::new(spec, evidence);
    if let Some(g) = host.gens.get(&hold.failed) {
        b.remove_failed(hold.failed, g);
    }
    // Only the hold speaks to the operator here: the builder's notes (data of the
    // failed generation kept) are not carried, as the planner has always done.
    let (steps, _) = b.finish().map_err(|problems| refusal(spec, problems))?;
    Ok(Plan {
        copy: None,
        project: spec.project.clone(),
        desired: hold.failed,
        target: hold.failed,
        live,
        kind: if steps.is_empty() {
            PlanKind::InSync
        } else {
            PlanKind::Repair
        },
        hold: Some(hold.message),
        pinned: None,
        notes: Vec::new(),
        steps,
    })
}

/// The fields a container's recorded settings differ in from what the spec asks,
/// for a refusal; what can be said when it recorded none.
pub(super) fn what_changed(c: &Container, want: &desired::ContainerConfig) -> String {
    let unrecorded = match Settings::recorded(c) {
        Ok(made) => {
            let changes: Vec<String> = made
                .changes(&Settings::of(want))
                .iter()
                .map(ToString::to_string)
                .collect();
            return if changes.is_empty() {
                "its recorded settings equal the spec's; only the fingerprint differs".into()
            } else {
                changes.join("; ")
            };
        }
        Err(why) => why,
    };
    if c.image == want.image {
        // The likeliest cause on an unchanged spec: ports used to be fingerprinted in
        // the order the spec lists them.
        let hint = match unrecorded {
            Unrecorded::Missing => " (earlier gemctl also counted the order of `ports`)",
            Unrecorded::Unreadable(_) => "",
        };
        format!("{unrecorded}; only the fingerprint differs{hint}")
    } else {
        format!(
            "image changed: {} → {} ({unrecorded}, so other changes cannot be named)",
            c.image, want.image
        )
    }
}
