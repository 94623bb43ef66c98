//! Pins: `gemctl rollback` and `gemctl restore` hold the host on a generation other
//! than the spec's. This decides whether a pin applies and what it makes the target;
//! not how the pinned generation is reached (rollback or restore do that).

use crate::observed::Pin;

use super::Problem;
use super::recognise::Host;

/// A pin that holds for this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pinned {
    /// The generation the host is held on: the plan's target.
    pub(super) generation: u64,
    /// The backup a restore pin's generation is (re)built from, set only when its
    /// data is not on the host (restored data that is there is simply returned to).
    pub(super) rebuild_from: Option<String>,
    /// What the plan tells the operator about the pin.
    pub(super) message: String,
}

/// The pin that holds for a spec asking for `desired`, or the problem when it holds
/// the host on data that is gone and no backup can rebuild it.
pub(super) fn resolve_pin(
    pin: Option<&Pin>,
    desired: u64,
    host: &Host,
) -> Result<Option<Pinned>, Problem> {
    let Some(pin) = pin.filter(|p| p.applies(desired)) else {
        return Ok(None);
    };
    let has_data = host.ready(pin.generation);
    if !has_data && pin.restore_from.is_none() {
        return Err(Problem {
            container: None,
            seen: format!(
                "the host is pinned to generation {} ({}), but that generation's data is gone",
                pin.generation, pin.reason
            ),
            fix:
                "run `gemctl unpin` to follow the spec again, or roll back to a retained generation"
                    .into(),
        });
    }
    let message = match &pin.restore_from {
        Some(backup) => format!(
            "pinned to generation {}, restored from {backup} by {} at {}; apply and reconcile \
             stay on it until the spec's generation moves past {} or `gemctl unpin` is run",
            pin.generation, pin.reason, pin.at, pin.generation
        ),
        None => format!(
            "pinned to generation {} by {} at {}; apply and reconcile stay on it until the \
             spec's generation changes from {desired} or `gemctl unpin` is run",
            pin.generation, pin.reason, pin.at
        ),
    };
    Ok(Some(Pinned {
        generation: pin.generation,
        rebuild_from: pin.restore_from.clone().filter(|_| !has_data),
        message,
    }))
}

#[cfg(test)]
mod tests {
    use super::resolve_pin;
    use crate::observed::{Observed, Pin};
    use crate::plan::fixture::{observed, ready, spec};
    use crate::plan::recognise::recognise;

    fn pin(generation: u64, spec_generation: u64, restore: bool) -> Pin {
        Pin {
            generation,
            spec_generation,
            at: "2026-11-23T00:00:00Z".into(),
            reason: "rollback by ops".into(),
            restore_from: restore.then(|| "/backups/shop.tar".into()),
        }
    }

    fn with_data(generations: &[u64]) -> Observed {
        observed(vec![], generations.iter().copied().map(ready).collect())
    }

    #[test]
    fn no_pin_leaves_the_spec_in_charge() {
        let obs = with_data(&[1]);
        let host = recognise(&spec(1), &obs).unwrap();
        assert_eq!(resolve_pin(None, 1, &host), Ok(None));
    }

    #[test]
    fn a_rollback_pin_holds_while_the_spec_generation_is_unchanged() {
        let obs = with_data(&[1, 2]);
        let host = recognise(&spec(2), &obs).unwrap();
        let p = pin(1, 2, false);
        let pinned = resolve_pin(Some(&p), 2, &host).unwrap().expect("pinned");
        assert_eq!(pinned.generation, 1);
        assert_eq!(pinned.rebuild_from, None);
        assert!(
            pinned
                .message
                .starts_with("pinned to generation 1 by rollback by ops")
        );
        assert_eq!(resolve_pin(Some(&p), 3, &host), Ok(None), "lapses");
    }

    #[test]
    fn a_rollback_pin_to_data_that_is_gone_is_refused() {
        let obs = with_data(&[2]);
        let host = recognise(&spec(2), &obs).unwrap();
        let problem = resolve_pin(Some(&pin(1, 2, false)), 2, &host).unwrap_err();
        assert!(
            problem.seen.contains("that generation's data is gone"),
            "{problem:?}"
        );
    }

    #[test]
    fn a_restore_pin_rebuilds_its_generation_only_when_its_data_is_not_there() {
        let p = pin(3, 2, true);
        let obs = with_data(&[2]);
        let host = recognise(&spec(2), &obs).unwrap();
        let pinned = resolve_pin(Some(&p), 2, &host).unwrap().expect("pinned");
        assert_eq!(pinned.generation, 3);
        assert_eq!(pinned.rebuild_from.as_deref(), Some("/backups/shop.tar"));

        let obs = with_data(&[2, 3]);
        let host = recognise(&spec(3), &obs).unwrap();
        let pinned = resolve_pin(Some(&p), 3, &host).unwrap().expect("pinned");
        assert_eq!(pinned.rebuild_from, None);
        assert_eq!(resolve_pin(Some(&p), 4, &host), Ok(None), "lapses past it");
    }
}
