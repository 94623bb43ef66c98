//! Rollback: back to a retained generation below newer data, which it runs on as it
//! was made. Only a generation whose data is still on the host can be gone back to;
//! the newer data is kept, and the plan says so.

use crate::desired;
use crate::spec::Spec;

use super::Problem;
use super::builder::Builder;
use super::recognise::{Gen, Host};

/// Returns to generation `target`, whose data is ready: its database (its own, or
/// the one it shares) runs again.
pub(super) fn rollback(b: &mut Builder, host: &Host, target: u64) {
    let db = host.db_gen(target);
    b.ensure_db_up(
        db,
        &host.generation(db),
        "the target generation's database must run",
    );
}

/// A target with no data below a newer generation that has some cannot be made:
/// generation numbers only move forward, and going back needs retained data.
pub(super) fn behind_newer_data(host: &Host, target: u64) -> Option<Problem> {
    let newest = host
        .newest_ready()
        .filter(|n| *n > target && !host.ready(target))?;
    Some(Problem {
        container: None,
        seen: format!(
            "generation {target} has no data on this host, but newer generation {newest} does: \
             generation numbers only move forward"
        ),
        fix: format!(
            "to deploy, set `generation` above {newest}; to roll back, pick a retained generation ({})",
            retained_list(host, target)
        ),
    })
}

/// What the operator must know after going back: writes made since are not in the
/// target's data (they stay on storage), and the app runs as it was made, not as
/// today's spec describes it.
pub(super) fn left_behind(spec: &Spec, host: &Host, target: u64, tgen: &Gen) -> Vec<String> {
    let db = host.db_gen(target);
    let newer: Vec<String> = host
        .ready_generations()
        .filter(|n| *n > target && host.db_gen(*n) != db)
        .map(|n| n.to_string())
        .collect();
    let mut notes = Vec::new();
    if !newer.is_empty() {
        notes.push(format!(
            "generation {target} runs on its own data: writes made in generation{} {} are NOT \
             in it. That data is kept under {} and is not deleted",
            if newer.len() == 1 { "" } else { "s" },
            newer.join(", "),
            spec.storage.display()
        ));
    }
    if let Some(app) = tgen.app
        && !desired::made_as(spec, &desired::app_on(spec, target, db), app.hash())
    {
        notes.push(format!(
            "{} runs as it was made ({}), not as the spec now describes it; \
             to run today's spec on this data, bump `generation`",
            app.c.name, app.c.image
        ));
    }
    notes
}

/// The generations that could be rolled back to, for a refusal.
fn retained_list(host: &Host, target: u64) -> String {
    let list: Vec<String> = host
        .ready_generations()
        .filter(|n| *n != target)
        .map(|n| n.to_string())
        .collect();
    if list.is_empty() {
        "none on this host".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::behind_newer_data;
    use crate::plan::fixture::{observed, ready, spec};
    use crate::plan::recognise::recognise;

    #[test]
    fn a_generation_without_data_below_newer_data_cannot_be_made() {
        let obs = observed(vec![], vec![ready(1), ready(3)]);
        let host = recognise(&spec(2), &obs).unwrap();
        let problem = behind_newer_data(&host, 2).expect("refused");
        assert!(
            problem.seen.contains("newer generation 3 does"),
            "{problem:?}"
        );
        assert!(problem.fix.contains("(1, 3)"), "{problem:?}");
    }

    #[test]
    fn a_retained_generation_or_one_above_the_newest_can_be_made() {
        let obs = observed(vec![], vec![ready(1), ready(3)]);
        let host = recognise(&spec(1), &obs).unwrap();
        assert_eq!(behind_newer_data(&host, 1), None);
        assert_eq!(behind_newer_data(&host, 4), None);
    }
}
