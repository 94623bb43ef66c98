//! Alerts, once per incident. A command, or a round of `reconcile`, raises
//! [`Alert`]s; [`Incidents`] decides which of them are sent. An incident is an
//! event with a key (a refusal's problems, an error's first line, the generation
//! that failed): while it goes on round after round it is told once, and the first
//! round without any incident after some were told sends one `recovered` alert
//! naming what cleared. News (a rollback, a restore) is always told.
//!
//! The memory is the process's: a new `reconcile` (or every `--once`) tells an
//! incident that is still going on again, once. Pure: `cli` sends what
//! [`Incidents::observe`] returns.

use serde::Serialize;

use crate::plan::Refusal;
use crate::report::Report;

/// The `event` field of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A deploy failed (its new generation was rolled back, a step failed), or a
    /// reconcile round could not run (engine unreachable, a bad spec, the lock held).
    Failed,
    /// gemctl refused to act; nothing was touched.
    Refused,
    /// A scheduled backup failed.
    BackupFailed,
    /// A restore drill found a backup that does not restore (or fails its check).
    DrillFailed,
    /// A rollback was carried out.
    Rollback,
    /// A restore was carried out.
    Restore,
    /// The incidents told before are over.
    Recovered,
}

/// What the notifiers receive (the project is added when it is sent).
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// What happened.
    pub event: Event,
    /// For a human: what was seen and what to do.
    pub message: String,
    /// The deployment report, when the apply changed something.
    pub report: Option<Report>,
    /// The planner's refusal, for `refused`.
    pub refusal: Option<Refusal>,
    /// For `recovered`: the incidents that cleared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<Resolved>,
    #[serde(skip)]
    incident: Option<Incident>,
}

/// An incident that cleared, as a `recovered` alert lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The event that told it.
    pub event: Event,
    /// The first line of that alert's message.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Incident {
    event: Event,
    key: String,
    /// False for a reminder: it keeps its incident open but never opens one.
    announce: bool,
}

impl Alert {
    fn new(event: Event, message: impl Into<String>, incident: Option<Incident>) -> Alert {
        Alert {
            event,
            message: message.into(),
            report: None,
            refusal: None,
            resolved: Vec::new(),
            incident,
        }
    }

    /// News, told every time it happens.
    pub fn news(event: Event, message: impl Into<String>) -> Alert {
        Alert::new(event, message, None)
    }

    /// An incident named by `key`: the same event and key again is the same incident.
    pub fn incident(event: Event, key: impl Into<String>, message: impl Into<String>) -> Alert {
        let key = key.into();
        Alert::new(
            event,
            message,
            Some(Incident {
                event,
                key,
                announce: true,
            }),
        )
    }

    /// An error that stopped a command, a round or a backup, keyed by its first
    /// line with the numbers masked: pids, times, sizes and temporary names change
    /// from one round of the same incident to the next.
    pub fn error(event: Event, message: impl Into<String>) -> Alert {
        let message = message.into();
        let key = first_line(&message)
            .split(|c: char| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .join("#");
        Alert::incident(event, key, message)
    }

    /// A refusal by the planner, keyed by what it saw.
    pub fn refused(refusal: &Refusal, message: impl Into<String>) -> Alert {
        let key = refusal
            .problems
            .iter()
            .map(|p| p.seen.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Alert {
            refusal: Some(refusal.clone()),
            ..Alert::incident(Event::Refused, key, message)
        }
    }

    /// A generation that failed its health checks and was rolled back.
    pub fn generation_failed(generation: u64, message: impl Into<String>) -> Alert {
        Alert::incident(Event::Failed, failed_key(generation), message)
    }

    /// A generation held back because it failed before: the failure goes on, but
    /// is not told again (nor by a process that never told it: the round is
    /// otherwise fine and a cron'd `--once` would tell it every time).
    pub fn held(generation: u64, message: impl Into<String>) -> Alert {
        Alert::new(
            Event::Failed,
            message,
            Some(Incident {
                event: Event::Failed,
                key: failed_key(generation),
                announce: false,
            }),
        )
    }

    /// The same alert with the apply's report attached.
    pub fn with_report(self, report: Option<Report>) -> Alert {
        Alert { report, ..self }
    }

    /// Whether this alert reports an incident (rather than news).
    pub fn is_incident(&self) -> bool {
        self.incident.is_some()
    }
}

fn failed_key(generation: u64) -> String {
    format!("generation {generation} failed")
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    event: Event,
    key: String,
    first_line: String,
}

/// The incidents told and not yet over, across the rounds of one process.
#[derive(Debug, Default)]
pub struct Incidents {
    open: Vec<Open>,
    /// Told incidents that cleared while others went on: listed by the `recovered`
    /// alert that comes when the last one clears.
    cleared: Vec<Open>,
}

impl Incidents {
    /// Takes every alert one round raised; returns those to send: news, incidents
    /// not open before, and one `recovered` when the round raised no incident
    /// after some were open.
    pub fn observe(&mut self, raised: Vec<Alert>) -> Vec<Alert> {
        let mut send = Vec::new();
        let mut now: Vec<Open> = Vec::new();
        for alert in raised {
            let Some(incident) = &alert.incident else {
                send.push(alert);
                continue;
            };
            let same = |o: &&Open| o.event == incident.event && o.key == incident.key;
            if now.iter().any(|o| same(&o)) {
                continue;
            }
            if let Some(open) = self.open.iter().find(same) {
                now.push(open.clone());
            } else if incident.announce {
                let open = Open {
                    event: incident.event,
                    key: incident.key.clone(),
                    first_line: first_line(&alert.message).to_string(),
                };
                self.cleared.retain(|c| c != &open);
                now.push(open);
                send.push(alert);
            }
        }
        for gone in self.open.drain(..) {
            if !now.contains(&gone) && !self.cleared.contains(&gone) {
                self.cleared.push(gone);
            }
        }
        self.open = now;
        if self.open.is_empty() && !self.cleared.is_empty() {
            let resolved: Vec<Resolved> = self
                .cleared
                .drain(..)
                .map(|o| Resolved {
                    event: o.event,
                    message: o.first_line,
                })
                .collect();
            let message = format!(
                "recovered: a round ran without incident after: {}",
                resolved
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            send.push(Alert {
                resolved,
                ..Alert::news(Event::Recovered, message)
            });
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Problem;

    fn events(alerts: &[Alert]) -> Vec<Event> {
        alerts.iter().map(|a| a.event).collect()
    }

    const UNREACHABLE: &str = "cannot reach the Docker engine (unix:///x.sock): Socket not found";

    #[test]
    fn an_unreachable_engine_over_ten_rounds_is_told_once_then_recovery_once() {
        let mut incidents = Incidents::default();
        let mut sent = Vec::new();
        for _ in 0..10 {
            sent.extend(incidents.observe(vec![Alert::error(Event::Failed, UNREACHABLE)]));
        }
        assert_eq!(events(&sent), [Event::Failed]);
        let back = incidents.observe(Vec::new());
        assert_eq!(events(&back), [Event::Recovered]);
        assert_eq!(
            back[0].resolved,
            [Resolved {
                event: Event::Failed,
                message: UNREACHABLE.into()
            }]
        );
        assert!(
            back[0].message.contains("Socket not found"),
            "{:?}",
            back[0]
        );
        assert!(
            incidents.observe(Vec::new()).is_empty(),
            "recovery is told once"
        );
    }

    #[test]
    fn numbers_in_an_error_do_not_make_a_new_incident_but_another_error_does() {
        let mut incidents = Incidents::default();
        let at = |t: &str| {
            Alert::error(
                Event::BackupFailed,
                format!("cannot open /b/.gem-gen1-{t}.tar.partial: No space left\nmore"),
            )
        };
        assert_eq!(incidents.observe(vec![at("20261127T101010Z")]).len(), 1);
        assert!(incidents.observe(vec![at("20261127T101011Z")]).is_empty());
        let other = Alert::error(Event::BackupFailed, "permission denied");
        assert_eq!(
            events(&incidents.observe(vec![other])),
            [Event::BackupFailed]
        );
    }

    #[test]
    fn a_refusal_is_keyed_by_its_problems() {
        let refusal = |seen: &str| Refusal {
            project: "p".into(),
            problems: vec![Problem {
                container: None,
                seen: seen.into(),
                fix: "look".into(),
            }],
        };
        let mut incidents = Incidents::default();
        let first = incidents.observe(vec![Alert::refused(&refusal("gem-8 is a stranger"), "x")]);
        assert_eq!(events(&first), [Event::Refused]);
        assert_eq!(first[0].refusal, Some(refusal("gem-8 is a stranger")));
        assert!(
            incidents
                .observe(vec![Alert::refused(&refusal("gem-8 is a stranger"), "x")])
                .is_empty()
        );
        let changed = incidents.observe(vec![Alert::refused(&refusal("gem-9 is a stranger"), "y")]);
        assert_eq!(
            events(&changed),
            [Event::Refused],
            "another problem is news"
        );
    }

    #[test]
    fn a_held_generation_continues_its_failure_and_never_opens_one() {
        let mut incidents = Incidents::default();
        assert!(
            incidents.observe(vec![Alert::held(2, "held")]).is_empty(),
            "a fresh process does not tell a hold"
        );
        assert_eq!(
            events(&incidents.observe(vec![Alert::generation_failed(3, "3 failed")])),
            [Event::Failed]
        );
        assert!(incidents.observe(vec![Alert::held(3, "held")]).is_empty());
        assert!(incidents.observe(vec![Alert::held(3, "held")]).is_empty());
        let fixed = incidents.observe(Vec::new());
        assert_eq!(events(&fixed), [Event::Recovered]);
        assert_eq!(fixed[0].resolved[0].message, "3 failed");
    }

    #[test]
    fn recovery_waits_for_every_incident_and_lists_them_all() {
        let mut incidents = Incidents::default();
        let engine = || Alert::error(Event::Failed, UNREACHABLE);
        let backup = || Alert::error(Event::BackupFailed, "the scheduled backup failed: full");
        assert_eq!(incidents.observe(vec![engine(), backup()]).len(), 2);
        assert!(incidents.observe(vec![backup()]).is_empty());
        let back = incidents.observe(Vec::new());
        assert_eq!(events(&back), [Event::Recovered]);
        assert_eq!(
            back[0].resolved.iter().map(|r| r.event).collect::<Vec<_>>(),
            [Event::Failed, Event::BackupFailed]
        );
    }

    #[test]
    fn news_is_always_told_and_one_round_tells_an_incident_once() {
        let mut incidents = Incidents::default();
        let round = || {
            vec![
                Alert::news(Event::Rollback, "rolled back"),
                Alert::error(Event::Failed, UNREACHABLE),
                Alert::error(Event::Failed, UNREACHABLE),
            ]
        };
        assert_eq!(
            events(&incidents.observe(round())),
            [Event::Rollback, Event::Failed]
        );
        assert_eq!(events(&incidents.observe(round())), [Event::Rollback]);
    }

    #[test]
    fn the_payload_names_the_event_as_the_docs_do() {
        let back = {
            let mut incidents = Incidents::default();
            incidents.observe(vec![Alert::error(Event::BackupFailed, "x")]);
            incidents.observe(Vec::new()).remove(0)
        };
        let v = serde_json::to_value(&back).unwrap();
        assert_eq!(v["event"], "recovered");
        assert_eq!(v["resolved"][0]["event"], "backup_failed");
        assert!(v["report"].is_null() && v["refusal"].is_null());
        let plain = serde_json::to_value(Alert::news(Event::Restore, "r")).unwrap();
        assert!(plain.get("resolved").is_none());
    }
}
