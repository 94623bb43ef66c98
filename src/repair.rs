//! `gemctl repair-state`: rebuilds the records under the storage root that can be
//! rebuilt from evidence — the engine's labels and the other records — instead of
//! acting on a guess. What cannot be rebuilt is left alone and said, with what to
//! do; the operator's own word (`--discard N`, `--ready N`, `--reset-history`) is
//! taken only where no evidence contradicts it.
//!
//! [`decide`] is pure (an observation and the operator's options in, the repairs
//! out); [`carry_out`] writes them through [`crate::state`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::desired::{self, Role};
use crate::error::Error;
use crate::observed::{HISTORY_FILE, LIVE_FILE, Marker, Observation, READY_MARKER, SERVED_FILE};
use crate::spec::Spec;
use crate::state;

/// What the operator asks for beyond the rebuild from evidence.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Generations whose data the operator declares debris that never served.
    pub discard: Vec<u64>,
    /// Generations whose data the operator declares complete.
    pub ready: Vec<u64>,
    /// Move a corrupt history aside and start an empty one.
    pub reset_history: bool,
}

/// One change to a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "repair", rename_all = "snake_case")]
pub enum Repair {
    /// Write the record of generations that served.
    Served {
        /// Its contents.
        generations: BTreeSet<u64>,
        /// Why these.
        why: String,
    },
    /// Write the live pointer.
    Live {
        /// The generation.
        generation: u64,
        /// Why.
        why: String,
    },
    /// Write a generation's marker.
    Marker {
        /// The generation.
        generation: u64,
        /// The new marker.
        marker: Marker,
        /// Why.
        why: String,
    },
    /// Move the history aside and start an empty one.
    ResetHistory,
}

/// What `repair-state` does and what it leaves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairPlan {
    /// Changes to make.
    pub repairs: Vec<Repair>,
    /// Problems it cannot resolve, each with what to do.
    pub left: Vec<String>,
}

/// Decides the repairs for an observation.
pub fn decide(spec: &Spec, observation: &Observation, options: &RepairOptions) -> RepairPlan {
    let storage = &observation.observed.storage;
    let mut out = RepairPlan::default();
    let state_file = |name: &str| state::state_file(&spec.storage, name).display().to_string();
    let damaged = |name: &str| storage.damage.iter().find(|d| d.file == state_file(name));

    // Apps of this project started with the public ports: they may have served.
    let public: Vec<(u64, bool)> = observation
        .observed
        .containers
        .iter()
        .filter(|c| {
            c.is_public_app_of(&spec.project) && c.state != crate::observed::ContainerState::Created
        })
        .filter_map(|c| {
            let n = c.generation()?;
            (c.name == desired::container_name(spec, Role::App, n)).then_some((n, c.state.is_up()))
        })
        .collect();

    let mut live = storage.live;
    if let Some(d) = damaged(LIVE_FILE) {
        let running: Vec<u64> = public.iter().filter(|(_, up)| *up).map(|p| p.0).collect();
        match running.as_slice() {
            [g] => {
                live = Some(*g);
                out.repairs.push(Repair::Live {
                    generation: *g,
                    why: format!(
                        "{} {}; the app serving now is generation {g}",
                        d.file, d.problem
                    ),
                });
            }
            _ => out.left.push(format!(
                "{} {}, and {} app of this project serves now to rebuild it from: start the \
                 generation that should be live (`gemctl rollback --to N` or `gemctl apply`) \
                 after writing its number into the file",
                d.file,
                d.problem,
                if running.is_empty() {
                    "no"
                } else {
                    "more than one"
                }
            )),
        }
    }

    let rollback_pin = storage
        .pin
        .as_ref()
        .filter(|p| p.restore_from.is_none())
        .map(|p| p.generation);
    let mut served = match (&storage.served, damaged(SERVED_FILE)) {
        (Some(s), None) => s.clone(),
        (_, damage) => {
            let mut s = state::seed_served(storage);
            s.extend(public.iter().map(|p| p.0));
            s.extend(live);
            out.repairs.push(Repair::Served {
                generations: s.clone(),
                why: match damage {
                    Some(d) => format!("{} {}", d.file, d.problem),
                    None => format!("{} is missing", state_file(SERVED_FILE)),
                } + "; every generation recorded live, pinned, exposed or with ready data \
                     counts as having served",
            });
            s
        }
    };
    served.extend(live);
    served.extend(rollback_pin);
    served.extend(public.iter().map(|p| p.0));

    for data in &storage.generations {
        let n = data.generation;
        let file = desired::generation_dir(spec, n).join(READY_MARKER);
        let discard = options.discard.contains(&n);
        let ready = options.ready.contains(&n);
        if discard && served.contains(&n) {
            out.left.push(format!(
                "--discard {n} refused: generation {n} served (its records or labels say so), \
                 so its data is never deleted as debris"
            ));
            continue;
        }
        if discard && data.ready() {
            out.left.push(format!(
                "--discard {n} refused: {} says its data is ready; it is pruned by retention \
                 when it falls out of it",
                file.display()
            ));
            continue;
        }
        if discard {
            out.repairs.push(Repair::Marker {
                generation: n,
                marker: Marker::Discarded {
                    reason: "declared debris with `gemctl repair-state --discard`".into(),
                },
                why: "the operator declared it debris and nothing says it served".into(),
            });
        } else if data.marker.unknown() && served.contains(&n) {
            out.repairs.push(Repair::Marker {
                generation: n,
                marker: Marker::Ready { copied_from: None },
                why: format!(
                    "{} {}; generation {n} served, so its data was complete",
                    file.display(),
                    marker_problem(&data.marker)
                ),
            });
        } else if data.marker.unknown() && ready {
            out.repairs.push(Repair::Marker {
                generation: n,
                marker: Marker::Ready { copied_from: None },
                why: "the operator declared its data complete".into(),
            });
        } else if data.marker.unknown() {
            out.left.push(format!(
                "{} {}, and nothing says generation {n} served: look at {}, then run again with \
                 `--discard {n}` (debris: the next apply deletes it) or `--ready {n}` (complete)",
                file.display(),
                marker_problem(&data.marker),
                desired::generation_dir(spec, n).display()
            ));
        }
    }
    for n in options.discard.iter().chain(&options.ready) {
        if !storage.generations.iter().any(|d| d.generation == *n) {
            out.left
                .push(format!("generation {n} has no data directory on this host"));
        }
    }

    if let Some(d) = damaged(HISTORY_FILE) {
        if options.reset_history {
            out.repairs.push(Repair::ResetHistory);
        } else {
            out.left.push(format!(
                "{} {}: run again with `--reset-history` to move it aside and start an empty one \
                 (gemctl then forgets which generations failed, and may try one again), or \
                 restore it from a copy",
                d.file, d.problem
            ));
        }
    }
    if let Some(d) = damaged(crate::observed::PIN_FILE) {
        out.left
            .push(format!("{} {}: {}", d.file, d.problem, d.fix));
    }
    out
}

fn marker_problem(m: &Marker) -> String {
    match m {
        Marker::Unreadable { problem } => problem.clone(),
        _ => "is missing".into(),
    }
}

/// Writes the repairs; returns where a replaced record was moved to, if anywhere.
pub fn carry_out(spec: &Spec, plan: &RepairPlan) -> Result<Vec<PathBuf>, Error> {
    let stamp: String = state::now_rfc3339()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let mut moved = Vec::new();
    let mut aside = |name: &str| -> Result<(), Error> {
        moved.extend(state::move_aside(&spec.storage, name, &stamp)?);
        Ok(())
    };
    for r in &plan.repairs {
        match r {
            Repair::Served { generations, .. } => {
                aside(SERVED_FILE)?;
                state::write_served(&spec.storage, generations)?;
            }
            Repair::Live { generation, .. } => {
                aside(LIVE_FILE)?;
                state::set_live(&spec.storage, *generation)?;
            }
            Repair::Marker {
                generation, marker, ..
            } => {
                let dir = desired::generation_dir(spec, *generation);
                match marker {
                    Marker::Ready { copied_from } => state::mark_ready(&dir, *copied_from)?,
                    Marker::Discarded { reason } => state::mark_discarded(&dir, reason)?,
                    _ => unreachable!("repairs write only ready or discarded markers"),
                }
            }
            Repair::ResetHistory => aside(HISTORY_FILE)?,
        }
    }
    Ok(moved)
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Repair::Served { generations, why } => {
                let list: Vec<String> = generations.iter().map(u64::to_string).collect();
                write!(f, "rebuild {SERVED_FILE} as [{}] ({why})", list.join(", "))
            }
            Repair::Live { generation, why } => {
                write!(f, "record generation {generation} as live ({why})")
            }
            Repair::Marker {
                generation,
                marker,
                why,
            } => write!(
                f,
                "mark generation {generation}'s data {} ({why})",
                match marker {
                    Marker::Ready { .. } => "ready",
                    _ => "discarded: never served, the next apply deletes it",
                }
            ),
            Repair::ResetHistory => write!(
                f,
                "move {HISTORY_FILE} aside and start an empty history (failed generations are \
                 forgotten)"
            ),
        }
    }
}
