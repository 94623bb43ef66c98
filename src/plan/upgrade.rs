//! Upgrade: a new generation whose data is copied from an older one, with the
//! source's writes stopped first and the copy verified before it is marked ready.

use super::Action;
use super::builder::Builder;
use super::recognise::{Gen, Host};

/// Makes generation `target`'s data as a verified copy of generation `from`'s.
pub(super) fn upgrade(b: &mut Builder, host: &Host, target: u64, tgen: &Gen, from: u64) {
    b.start_afresh(target, tgen);
    b.ensure_db_up(from, &host.gens[&from], "the copy reads from it");
    b.stop_other_apps(host, target, "its writes must stop before the copy");
    b.push(
        Action::CopyData { from, to: target },
        format!("generation {target} starts from generation {from}'s data"),
    );
    b.push(
        Action::VerifyCopy { from, to: target },
        "every table must have the same rows as the source",
    );
    b.push(
        Action::MarkReady {
            generation: target,
            copied_from: Some(from),
        },
        "the copy is complete and verified",
    );
}

/// The generation whose data a new `target` starts from: the one serving now, else
/// the one recorded live, else the newest ready one below the target. `None`: there
/// is nothing to copy, so the target is bootstrapped.
pub(super) fn pick_source(host: &Host, live: Option<u64>, target: u64) -> Option<u64> {
    let serving = host
        .gens
        .iter()
        .filter(|(n, g)| **n != target && g.ready() && g.app.is_some_and(|a| a.up() && a.public()))
        .map(|(n, _)| *n)
        .max();
    serving
        .or(live.filter(|l| *l != target))
        .or_else(|| host.ready_generations().filter(|n| *n < target).max())
}

#[cfg(test)]
mod tests {
    use super::pick_source;
    use crate::observed::ContainerState::{Exited, Running};
    use crate::observed::Marker;
    use crate::plan::fixture::{app, data, observed, ready, spec};
    use crate::plan::recognise::recognise;

    #[test]
    fn the_serving_generation_is_the_source_before_the_recorded_live_one() {
        let s = spec(4);
        let obs = observed(
            vec![app(&s, 2, Running, true)],
            vec![ready(1), ready(2), ready(3)],
        );
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(pick_source(&host, Some(3), 4), Some(2));
    }

    #[test]
    fn a_stopped_app_or_a_probe_is_not_serving_so_the_live_generation_is_the_source() {
        let s = spec(4);
        let obs = observed(
            vec![app(&s, 2, Exited, true), app(&s, 3, Running, false)],
            vec![ready(1), ready(2), ready(3)],
        );
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(pick_source(&host, Some(1), 4), Some(1));
    }

    #[test]
    fn otherwise_the_newest_ready_generation_below_the_target_is_the_source() {
        let s = spec(4);
        let obs = observed(
            vec![],
            vec![ready(1), ready(2), data(3, Marker::Preparing), ready(5)],
        );
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(pick_source(&host, None, 4), Some(2));
    }

    #[test]
    fn the_target_is_never_its_own_source() {
        let s = spec(2);
        let obs = observed(vec![app(&s, 2, Running, true)], vec![ready(2)]);
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(pick_source(&host, Some(2), 2), None);
    }

    #[test]
    fn an_empty_host_has_no_source_so_it_is_bootstrapped() {
        let s = spec(1);
        let obs = observed(vec![], vec![]);
        let host = recognise(&s, &obs).unwrap();
        assert_eq!(pick_source(&host, None, 1), None);
    }
}
