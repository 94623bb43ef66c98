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
