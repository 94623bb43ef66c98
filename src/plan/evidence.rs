//! What the host proves about the past: which generations may have served (I3),
//! and the state gemctl cannot trust enough to plan on. Deleting data outside
//! retention needs [`Evidence::may_have_served`] to say "never"; a host with
//! [`untrusted_state`] is not planned on at all.

use std::collections::BTreeSet;

use crate::desired;
use crate::observed::{GenerationData, Marker, Observed};
use crate::spec::Spec;

use super::Problem;
use super::recognise::Host;

/// What the host's records and labels say about which generations served.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// `<storage>/.gemctl/live`.
    pub live: Option<u64>,
    /// `<storage>/.gemctl/served.json`, `None` when missing.
    pub served: Option<&'a BTreeSet<u64>>,
    /// The generation a rollback pin holds the host on.
    pub rollback_pin: Option<u64>,
    /// The generation any pin names: its data is never deleted, except that a
    /// restore pin's half-made generation is redone from its backup.
    pub pinned: Option<u64>,
    /// The generation the front door forwarded to last (also while it holds
    /// requests), by its record: the front switches only to an app that passed
    /// its checks, and clients may have written through it from then on.
    pub fronted: Option<u64>,
}

impl<'a> Evidence<'a> {
    /// The evidence in an observation.
    pub fn of(observed: &'a Observed) -> Evidence<'a> {
        Evidence {
            live: observed.storage.live,
            served: observed.storage.served.as_ref(),
            rollback_pin: observed
                .storage
                .pin
                .as_ref()
                .filter(|p| p.restore_from.is_none())
                .map(|p| p.generation),
            pinned: observed.storage.pin.as_ref().map(|p| p.generation),
            fronted: observed
                .storage
                .front
                .as_ref()
                .and_then(|f| f.live.and_then(|slot| f.named(slot))),
        }
    }

    /// Why generation `n`'s data may have served an app, or `None` when the host
    /// proves it never did: its marker says so positively, no record names it, and
    /// no app of it was ever started with the public ports. Deleting data needs this
    /// proof (I3); a missing or unreadable marker or record is never it.
    pub fn may_have_served(
        &self,
        n: u64,
        marker: Option<&Marker>,
        public_app: bool,
    ) -> Option<String> {
        let served = match self.served {
            None => {
                return Some(
                    "there is no record of which generations served (.gemctl/served.json)".into(),
                );
            }
            Some(s) => s,
        };
        match marker {
            Some(m) if m.says_never_served() => {}
            Some(Marker::Ready { .. }) => {
                return Some("its marker says its data is ready, so it may have served".into());
            }
            Some(Marker::Shares { db }) => {
                return Some(format!(
                    "its marker says it runs on generation {db}'s database, so it may have served"
                ));
            }
            Some(_) => return Some("its marker is missing or unreadable".into()),
            None => return Some("it has no data directory to judge by".into()),
        }
        if self.live == Some(n) {
            Some("it is recorded live".into())
        } else if served.contains(&n) {
            Some("it is in the record of generations that served".into())
        } else if self.rollback_pin == Some(n) || self.pinned == Some(n) {
            Some("the host is pinned to it".into())
        } else if self.fronted == Some(n) {
            Some("the front door's record says it forwarded to its app".into())
        } else if public_app {
            Some("its app container was started with the public ports".into())
        } else {
            None
        }
    }
}

/// Problems with state gemctl cannot act on: damaged state files, and generations
/// whose marker is missing or unreadable (gemctl cannot tell whether their data is
/// complete, or whether it ever served).
pub(super) fn untrusted_state(
    spec: &Spec,
    observed: &Observed,
    host: &Host,
    evidence: &Evidence,
) -> Vec<Problem> {
    let mut problems: Vec<Problem> = observed
        .storage
        .damage
        .iter()
        .map(|d| Problem {
            container: None,
            seen: format!("{} {}", d.file, d.problem),
            fix: d.fix.clone(),
        })
        .collect();
    for (n, g) in &host.gens {
        if let Some(db) = g.data.and_then(GenerationData::shares)
            && (db == *n || !host.ready(db) || host.db_gen(db) != db)
        {
            problems.push(Problem {
                container: None,
                seen: format!(
                    "{} says generation {n} runs on generation {db}'s database, but generation                      {db} has no data of its own on this host",
                    desired::generation_dir(spec, *n)
                        .join(crate::observed::READY_MARKER)
                        .display()
                ),
                fix: format!(
                    "look at {}: if generation {db}'s data was moved, put it back; gemctl \
                     does not start generation {n} on a database it cannot find",
                    spec.storage.display()
                ),
            });
        }
        let Some(data) = g.data.filter(|d| d.marker.unknown()) else {
            continue;
        };
        let file = desired::generation_dir(spec, *n).join(crate::observed::READY_MARKER);
        let what = match &data.marker {
            Marker::Unreadable { problem } => problem.clone(),
            _ => "is missing".into(),
        };
        let served = evidence.live == Some(*n)
            || evidence.served.is_some_and(|s| s.contains(n))
            || evidence.rollback_pin == Some(*n)
            || evidence.fronted == Some(*n)
            || g.app.is_some_and(|a| a.exposed());
        problems.push(Problem {
            container: None,
            seen: format!(
                "{} {what}: gemctl cannot tell whether generation {n}'s data is complete or \
                 ever served, and does not act on a guess",
                file.display()
            ),
            fix: if served {
                format!(
                    "generation {n} served (its records or labels say so): run `gemctl \
                     repair-state -f SPEC` to rebuild its marker as ready"
                )
            } else {
                format!(
                    "nothing says generation {n} served. If its data is debris of an interrupted \
                     apply, `gemctl repair-state -f SPEC --discard {n}` marks it for deletion; if \
                     it is complete, `gemctl repair-state -f SPEC --ready {n}` marks it ready"
                )
            },
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Evidence, untrusted_state};
    use crate::observed::ContainerState::Exited;
    use crate::observed::{Damage, Marker};
    use crate::plan::fixture::{app, data, observed, ready, spec};
    use crate::plan::recognise::recognise;

    fn evidence(served: Option<&BTreeSet<u64>>) -> Evidence<'_> {
        Evidence {
            live: Some(1),
            served,
            rollback_pin: Some(2),
            pinned: Some(3),
            fronted: None,
        }
    }

    #[test]
    fn only_a_never_served_marker_with_nothing_against_it_proves_never_served() {
        let served = BTreeSet::from([4]);
        let e = evidence(Some(&served));
        let discarded = Marker::Discarded {
            reason: "test".into(),
        };
        assert_eq!(e.may_have_served(5, Some(&Marker::Preparing), false), None);
        assert_eq!(e.may_have_served(5, Some(&discarded), false), None);
    }

    #[test]
    fn anything_that_says_it_may_have_served_stops_the_deletion() {
        let served = BTreeSet::from([4]);
        let e = evidence(Some(&served));
        let preparing = Some(&Marker::Preparing);
        let why = |n, marker, public| {
            e.may_have_served(n, marker, public)
                .expect("may have served")
        };
        assert!(why(5, Some(&Marker::Ready { copied_from: None }), false).contains("ready"));
        assert!(why(5, Some(&Marker::Missing), false).contains("missing or unreadable"));
        assert!(why(5, None, false).contains("no data directory"));
        assert!(why(1, preparing, false).contains("recorded live"));
        assert!(why(4, preparing, false).contains("served"));
        assert!(why(2, preparing, false).contains("pinned"));
        assert!(why(3, preparing, false).contains("pinned"));
        assert!(why(5, preparing, true).contains("public ports"));
    }

    #[test]
    fn without_a_record_of_what_served_nothing_is_proven() {
        let e = evidence(None);
        let why = e.may_have_served(5, Some(&Marker::Preparing), false);
        assert!(why.is_some_and(|w| w.contains("no record")));
    }

    #[test]
    fn a_clean_host_is_trusted() {
        let s = spec(2);
        let obs = observed(vec![], vec![ready(1), data(2, Marker::Preparing)]);
        let host = recognise(&s, &obs).unwrap();
        assert!(untrusted_state(&s, &obs, &host, &Evidence::of(&obs)).is_empty());
    }

    #[test]
    fn damaged_state_files_are_untrusted_with_their_fix() {
        let s = spec(1);
        let mut obs = observed(vec![], vec![]);
        obs.storage.damage.push(Damage {
            file: "live".into(),
            problem: "is empty".into(),
            fix: "write the live generation".into(),
        });
        let host = recognise(&s, &obs).unwrap();
        let problems = untrusted_state(&s, &obs, &host, &Evidence::of(&obs));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].seen, "live is empty");
        assert_eq!(problems[0].fix, "write the live generation");
    }

    #[test]
    fn a_missing_marker_is_untrusted_and_the_fix_depends_on_whether_it_served() {
        let s = spec(3);
        let obs = observed(
            vec![app(&s, 2, Exited, true)],
            vec![data(1, Marker::Missing), data(2, Marker::Missing)],
        );
        let host = recognise(&s, &obs).unwrap();
        let problems = untrusted_state(&s, &obs, &host, &Evidence::of(&obs));
        assert_eq!(problems.len(), 2);
        assert!(problems[0].seen.contains("generation 1's data"));
        assert!(problems[0].fix.contains("--discard 1"), "{:?}", problems[0]);
        assert!(
            problems[1].fix.starts_with("generation 2 served"),
            "{:?}",
            problems[1]
        );
    }
}
