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
