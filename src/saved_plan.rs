//! Saved plans: `gemctl diff --out plan.json` writes the plan with what it was
//! computed from (its [`Basis`]: the spec, the containers and networks in scope,
//! the records on storage, the failure history); `gemctl apply plan.json`
//! carries out exactly that plan once the host and spec are shown to be what they
//! were, and refuses it as stale otherwise, saying what changed — as Terraform
//! does with a saved plan.
//!
//! Not here: carrying out the steps (`execute`), or planning (`plan`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desired::fingerprint;
use crate::error::Error;
use crate::observed::Observation;
use crate::plan::{Plan, in_scope};
use crate::spec::Spec;

/// The format written; a file of another format is refused.
pub const FORMAT: u32 = 1;

/// A plan as `gemctl diff --out` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// The gemctl that wrote it.
    pub gemctl: String,
    /// [`FORMAT`].
    pub format: u32,
    /// The spec file it was made from (absolute).
    pub spec_file: PathBuf,
    /// When (RFC 3339 UTC).
    pub made: String,
    /// What it was computed from.
    pub basis: Basis,
    /// The plan, carried out step by step as written.
    pub plan: Plan,
}

/// What a plan was computed from, as much as decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Basis {
    /// Fingerprint of the spec (every field, the maintenance page's text too).
    pub spec: String,
    /// The spec's generation, to say what changed.
    pub generation: u64,
    /// Planned as with `--retry`.
    pub retry: bool,
    /// The containers in the spec's scope: name → `id state`.
    pub containers: BTreeMap<String, String>,
    /// The project's network, when the engine has it.
    pub networks: Vec<String>,
    /// The generation recorded live.
    pub live: Option<u64>,
    /// Fingerprint of every record on storage (markers, pin, served, front).
    pub storage: String,
    /// Fingerprint of the failure history.
    pub history: String,
    /// The db image's PostgreSQL major version, as observed.
    pub db_image_major: Option<u32>,
}

impl Basis {
    /// The basis of a plan for `spec` on `observation`.
    pub fn of(spec: &Spec, observation: &Observation, retry: bool) -> Basis {
        let observed = &observation.observed;
        let mut spec_text = serde_json::to_string(spec).expect("the spec serialises");
        if let Some(page) = spec.front.as_ref().and_then(|f| f.page_html.as_ref()) {
            spec_text.push_str(page);
        }
        // A pin that no longer holds is removed at the start of an apply: it
        // decides nothing, so it does not make the plan stale.
        let mut storage = observed.storage.clone();
        storage.pin = storage.pin.filter(|p| p.applies(spec.generation.0));
        let storage_text = serde_json::to_string(&storage).expect("records serialise");
        let history_text =
            serde_json::to_string(&observation.history).expect("the history serialises");
        Basis {
            spec: fingerprint(spec_text.as_bytes()),
            generation: spec.generation.0,
            retry,
            containers: observed
                .containers
                .iter()
                .filter(|c| in_scope(spec, c))
                .map(|c| (c.name.clone(), format!("{} {}", short(&c.id), c.state)))
                .collect(),
            // The planner reads one network, the project's (whether it must be
            // made): another project's network coming or going is no change.
            networks: observed
                .networks
                .iter()
                .filter(|n| **n == spec.network_name())
                .cloned()
                .collect(),
            live: observed.storage.live,
            storage: fingerprint(storage_text.as_bytes()),
            history: fingerprint(history_text.as_bytes()),
            db_image_major: observed.db_image_major,
        }
    }

    /// What differs from `then` (the basis a plan was made on) now, one phrase
    /// each; empty when the plan still holds.
    pub fn changes_since(&self, then: &Basis) -> Vec<String> {
        let mut out = Vec::new();
        if self.spec != then.spec {
            out.push(if self.generation != then.generation {
                format!(
                    "the spec's generation is {} (the plan was made for {})",
                    self.generation, then.generation
                )
            } else {
                "the spec changed".into()
            });
        }
        if self.retry != then.retry {
            out.push("the plan was made with a different --retry".into());
        }
        for (name, was) in &then.containers {
            match self.containers.get(name) {
                None => out.push(format!("{name} is gone (was {was})")),
                Some(now) if now != was => out.push(format!("{name} is now {now} (was {was})")),
                Some(_) => {}
            }
        }
        for (name, now) in &self.containers {
            if !then.containers.contains_key(name) {
                out.push(format!("{name} appeared ({now})"));
            }
        }
        if self.networks != then.networks {
            out.push(format!(
                "the networks are [{}] (were [{}])",
                self.networks.join(", "),
                then.networks.join(", ")
            ));
        }
        if self.live != then.live {
            out.push(format!(
                "generation {} is recorded live (was {})",
                show(self.live),
                show(then.live)
            ));
        } else if self.storage != then.storage {
            out.push("the records under the storage root changed".into());
        }
        if self.history != then.history {
            out.push("the failure history changed".into());
        }
        if self.db_image_major != then.db_image_major {
            out.push("the db image's PostgreSQL version changed".into());
        }
        out
    }
}

fn show(n: Option<u64>) -> String {
    n.map_or("none".into(), |n| n.to_string())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl SavedPlan {
    /// A plan with its basis, made now from `spec_file`.
    pub fn new(spec_file: &Path, basis: Basis, plan: Plan) -> SavedPlan {
        SavedPlan {
            gemctl: crate::version::LONG.to_string(),
            format: FORMAT,
            spec_file: std::path::absolute(spec_file).unwrap_or_else(|_| spec_file.into()),
            made: crate::state::now_rfc3339(),
            basis,
            plan,
        }
    }

    /// Reads a saved plan, or says why the file is not one.
    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{}: not a saved plan ({e})", path.display())))?;
        if value["format"] != FORMAT {
            return Err(Error::Usage(format!(
                "{}: a saved plan of format {} (this gemctl reads format {FORMAT}): make it \
                 again with `gemctl diff -f SPEC --out {}`",
                path.display(),
                value["format"],
                path.display()
            )));
        }
        serde_json::from_value(value).map_err(|e| {
            Error::Usage(format!(
                "{}: not a saved plan ({e}); make one with `gemctl diff -f SPEC --out {}`",
                path.display(),
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Container, ContainerState, Observed};

    fn spec(generation: u64) -> Spec {
        Spec::parse(
            Path::new("/specs/s.yaml"),
            &format!(
                "project: shop\ngeneration: {generation}\nstorage: /srv/shop\nscope: project\n\
                 app: {{ image: \"a:1\" }}\ndb: {{ image: \"postgres:15\" }}\n"
            ),
        )
        .unwrap()
    }

    fn container(name: &str, project: &str, state: ContainerState) -> Container {
        Container {
            name: name.into(),
            id: format!("{name}-id"),
            image: "x:1".into(),
            labels: [(crate::labels::PROJECT.to_string(), project.to_string())].into(),
            state,
            health: None,
            ports: Vec::new(),
            created: None,
        }
    }

    fn observation(containers: Vec<Container>) -> Observation {
        Observation {
            observed: Observed {
                containers,
                ..Observed::default()
            },
            history: Default::default(),
        }
    }

    #[test]
    fn the_same_host_and_spec_leave_the_plan_standing() {
        let obs = observation(vec![container("gem-1", "shop", ContainerState::Running)]);
        let then = Basis::of(&spec(2), &obs, false);
        assert!(
            Basis::of(&spec(2), &obs, false)
                .changes_since(&then)
                .is_empty()
        );
    }

    #[test]
    fn what_changed_is_said_container_by_container() {
        let then_obs = observation(vec![
            container("gem-1", "shop", ContainerState::Running),
            container("db-1", "shop", ContainerState::Running),
            container("other", "elsewhere", ContainerState::Running),
        ]);
        let then = Basis::of(&spec(2), &then_obs, false);
        let now_obs = observation(vec![
            container("gem-1", "shop", ContainerState::Exited),
            container("gem-2", "shop", ContainerState::Running),
            // Out of scope (`scope: project`): its change decides nothing.
            container("other", "elsewhere", ContainerState::Exited),
        ]);
        let changes = Basis::of(&spec(3), &now_obs, false).changes_since(&then);
        assert_eq!(
            changes,
            [
                "the spec's generation is 3 (the plan was made for 2)",
                "db-1 is gone (was db-1-id running)",
                "gem-1 is now gem-1-id exited (was gem-1-id running)",
                "gem-2 appeared (gem-2-id running)",
            ]
        );
    }
}
