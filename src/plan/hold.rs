//! The failed-generation hold (I6): a generation that failed its health checks is
//! not retried unchanged. The host stays on (or returns to) the generation that was
//! live, and what the failed attempt left is cleared away. Not the clearing itself:
//! that is pruning's, through the `Builder`.

use crate::desired;
use crate::observed::History;
use crate::spec::Spec;

use super::PlanOptions;
use super::recognise::Host;

/// The host is held back from the spec's generation because it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    /// The generation that failed: the spec's.
    pub(super) failed: u64,
    /// The generation the host stays on, if there is one.
    pub(super) fallback: Option<u64>,
    /// What the plan tells the operator.
    pub(super) message: String,
}

/// Whether the spec's generation is held back: it failed before with this very spec,
/// is not live, the operator did not ask to retry it, and no newer data exists (then
/// the failure is history and the newer data decides).
pub(super) fn failed_hold(
    spec: &Spec,
    history: &History,
    host: &Host,
    live: Option<u64>,
    options: PlanOptions,
) -> Option<Hold> {
    let desired = spec.generation.0;
    let failed = history.failure(desired)?;
    if options.retry_failed
        || failed.spec_hash != desired::generation_hash(spec, desired)
        || live == Some(desired)
        || host.newest_ready().is_some_and(|n| desired < n)
    {
        return None;
    }
    let fallback = live.or_else(|| host.ready_generations().filter(|n| *n < desired).max());
    let message = format!(
        "generation {desired} failed at {} ({}); the host stays on {}. \
         Fix the release and bump `generation`, or run `gemctl apply --retry` to try it again",
        failed.at,
        failed.reason,
        fallback.map_or("no generation".to_string(), |n| format!("generation {n}"))
    );
    Some(Hold {
        failed: desired,
        fallback,
        message,
    })
}
