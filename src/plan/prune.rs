//! Pruning: what goes besides the target's own work. First the debris of interrupted
//! or failed applies (copy containers, generations whose data never became ready),
//! which never served and is removed only with that proof; last the generations past
//! retention, each deletion a visible step.

use std::collections::BTreeSet;

use crate::labels;

use super::Action;
use super::builder::Builder;
use super::hold::Hold;
use super::recognise::Host;

/// Removes what interrupted or failed applies left, other than the target's own
/// half-made work (which its kind of plan redoes).
pub(super) fn clear_debris(b: &mut Builder, host: &Host, target: u64, hold: Option<&Hold>) {
    for (n, c) in &host.copies {
        b.push(
            Action::RemoveContainer {
                generation: *n,
                container: c.name.clone(),
                role: labels::ROLE_COPY.into(),
            },
            "left over from an interrupted data copy, restore or backup",
        );
    }
    let failed = hold.and_then(|h| Some((h.failed, host.gens.get(&h.failed)?)));
    if let Some((n, g)) = failed {
        b.remove_failed(n, g);
    }
    for (n, g) in &host.gens {
        if *n == target || g.ready() || failed.is_some_and(|(f, _)| f == *n) {
            continue;
        }
        if g.data.is_some() {
            b.remove_never_served(*n, g, "never became ready (interrupted or failed apply)");
        } else {
            b.remove_containers(*n, g, "its data directory is gone");
        }
    }
}

/// The generations kept for rollback: the `m` newest ready ones below the target,
/// the one its data came from, and the one any pin names. Newer generations (after a
/// rollback) are never pruned, so they need no place here.
pub(super) fn retained(
    host: &Host,
    target: u64,
    m: usize,
    copied_from: Option<u64>,
    pinned: Option<u64>,
) -> BTreeSet<u64> {
    let mut keep: BTreeSet<u64> = host
        .ready_generations()
        .rev()
        .filter(|n| *n < target)
        .take(m)
        .collect();
    keep.extend(copied_from);
    keep.extend(pinned);
    keep
}

/// Deletes every ready generation below the target that is not [`retained`], nor
/// the database of one that is (`target_db`: the one the target runs on);
/// `copied_from` is the generation the target's data came from.
pub(super) fn past_retention(
    b: &mut Builder,
    host: &Host,
    target: u64,
    target_db: u64,
    copied_from: Option<u64>,
) {
    let retain = b.spec.retain.0;
    let mut keep = retained(
        host,
        target,
        retain as usize,
        copied_from,
        b.evidence.pinned,
    );
    // A database stays as long as any generation kept (or newer) runs on it.
    let shared: Vec<u64> = keep
        .iter()
        .copied()
        .chain(host.gens.keys().copied().filter(|n| *n >= target))
        .map(|n| host.db_gen(n))
        .chain([target_db])
        .collect();
    keep.extend(shared);
    let why = format!(
        "older than the {retain} retained generation{}",
        if retain == 1 { "" } else { "s" }
    );
    // Generations sharing a database go before the one that owns it, so that a
    // run killed in between leaves no generation naming a database that is gone.
    let pruned = host
        .gens
        .iter()
        .filter(|(n, g)| **n < target && g.ready() && !keep.contains(n));
    let (sharing, owning): (Vec<_>, Vec<_>) = pruned.partition(|(n, _)| host.db_gen(**n) != **n);
    for (n, g) in sharing.into_iter().chain(owning) {
        b.remove_generation(*n, g, &why);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::retained;
    use crate::observed::Marker;
    use crate::plan::fixture::{data, observed, ready, spec};
    use crate::plan::recognise::recognise;

    #[test]
    fn the_newest_ready_generations_below_the_target_are_retained() {
        let s = spec(6);
        let obs = observed(
            vec![],
            vec![
                ready(1),
                ready(2),
                ready(3),
                data(4, Marker::Preparing),
                ready(5),
            ],
        );
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(retained(&host, 6, 2, None, None), BTreeSet::from([3, 5]));
    }

    #[test]
    fn the_source_and_the_pinned_generation_are_retained_beyond_the_count() {
        let s = spec(6);
        let obs = observed(vec![], (1..=5).map(ready).collect());
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(
            retained(&host, 6, 1, Some(2), Some(1)),
            BTreeSet::from([1, 2, 5])
        );
    }

    #[test]
    fn generations_above_the_target_are_not_counted() {
        let s = spec(5);
        let obs = observed(vec![], (1..=5).map(ready).collect());
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(retained(&host, 3, 1, None, None), BTreeSet::from([2]));
    }
}
