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
    // A failure of another step is recorded as "step i/n (…) failed: …".
    let what = if failed.reason.starts_with("step ") {
        "failed"
    } else {
        "failed its health checks"
    };
    let message = format!(
        "generation {desired} {what} at {} ({}); the host stays on {}. \
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

#[cfg(test)]
mod tests {
    use super::{Hold, failed_hold};
    use crate::desired;
    use crate::observed::{FailedGeneration, History, Marker};
    use crate::plan::PlanOptions;
    use crate::plan::fixture::{data, observed, ready, spec};
    use crate::plan::recognise::recognise;
    use crate::spec::Spec;

    fn failed(spec: &Spec, spec_hash: Option<&str>) -> History {
        let generation = spec.generation.0;
        History {
            failed: vec![FailedGeneration {
                generation,
                spec_hash: spec_hash.map_or_else(
                    || desired::generation_hash(spec, generation),
                    str::to_string,
                ),
                at: "2026-11-23T00:00:00Z".into(),
                reason: "health check failed".into(),
                report: None,
            }],
        }
    }

    #[test]
    fn a_failed_generation_holds_the_host_on_the_live_one() {
        let s = spec(3);
        let obs = observed(vec![], vec![ready(1), ready(2), data(3, Marker::Preparing)]);
        let host = recognise(&s, &obs).unwrap();
        let hold = failed_hold(
            &s,
            &failed(&s, None),
            &host,
            Some(1),
            PlanOptions::default(),
        );
        let Some(Hold {
            failed: 3,
            fallback: Some(1),
            message,
        }) = hold
        else {
            panic!("not held on generation 1: {hold:?}");
        };
        assert!(
            message.contains("the host stays on generation 1"),
            "{message}"
        );
    }

    #[test]
    fn with_nothing_live_the_hold_falls_back_to_the_newest_ready_generation_below() {
        let s = spec(3);
        let obs = observed(vec![], vec![ready(1), ready(2)]);
        let host = recognise(&s, &obs).unwrap();
        let hold = failed_hold(&s, &failed(&s, None), &host, None, PlanOptions::default());
        assert_eq!(hold.and_then(|h| h.fallback), Some(2));
    }

    #[test]
    fn with_nothing_to_fall_back_to_the_hold_says_so() {
        let s = spec(1);
        let obs = observed(vec![], vec![]);
        let host = recognise(&s, &obs).unwrap();
        let hold =
            failed_hold(&s, &failed(&s, None), &host, None, PlanOptions::default()).expect("held");
        assert_eq!(hold.fallback, None);
        assert!(
            hold.message.contains("stays on no generation"),
            "{}",
            hold.message
        );
    }

    #[test]
    fn no_hold_on_retry_a_changed_spec_a_live_generation_newer_data_or_no_failure() {
        let s = spec(3);
        let obs = observed(vec![], vec![ready(1), ready(2), ready(3)]);
        let host = recognise(&s, &obs).unwrap();
        let none = PlanOptions::default();
        let retry = PlanOptions { retry_failed: true };
        assert_eq!(
            failed_hold(&s, &failed(&s, None), &host, Some(2), retry),
            None
        );
        let other = failed(&s, Some("0000"));
        assert_eq!(failed_hold(&s, &other, &host, Some(2), none), None);
        assert_eq!(
            failed_hold(&s, &failed(&s, None), &host, Some(3), none),
            None
        );
        assert_eq!(
            failed_hold(&s, &History::default(), &host, Some(2), none),
            None
        );

        let newer = observed(vec![], vec![ready(2), ready(4)]);
        let host = recognise(&s, &newer).unwrap();
        assert_eq!(
            failed_hold(&s, &failed(&s, None), &host, Some(2), none),
            None
        );
    }
}
