//! What gemctl sees of the host: containers, networks, the generations on storage,
//! and the history of failed generations. Plain data, serialisable, so a saved
//! observation (`gemctl observe > obs.json`) can be planned against with no engine.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One engine round trip plus a read of the storage root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Every container on the engine (all states).
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Names of the networks on the engine.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The generations present under the storage root.
    #[serde(default)]
    pub storage: Storage,
    /// The PostgreSQL major version of the spec's db image (`PG_MAJOR` in its
    /// environment), `None` when it cannot be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_image_major: Option<u32>,
}

/// A container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Name without Docker's leading `/`.
    pub name: String,
    /// Engine id.
    #[serde(default)]
    pub id: String,
    /// Image as the container was created from it.
    #[serde(default)]
    pub image: String,
    /// All labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// Docker health status, when the image defines a healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Published ports as `ip:host->container/proto`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// When it was created (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused (counts as up).
    Paused,
    /// Restarting (counts as up).
    Restarting,
    /// Being removed.
    Removing,
    /// Stopped.
    Exited,
    /// Failed to stop or remove.
    Dead,
}

impl Container {
    /// An app of `project` made with the public ports (it may not have started).
    pub fn is_public_app_of(&self, project: &str) -> bool {
        let label = |k: &str| self.labels.get(k).map(String::as_str);
        label(crate::labels::PROJECT) == Some(project)
            && label(crate::labels::ROLE) == Some(crate::labels::ROLE_APP)
            && label(crate::labels::EXPOSURE) == Some(crate::labels::EXPOSURE_PUBLIC)
    }

    /// The generation its label names, if it names one.
    pub fn generation(&self) -> Option<u64> {
        self.labels.get(crate::labels::GENERATION)?.parse().ok()
    }
}

impl ContainerState {
    /// Whether the container is up (would answer, or holds its ports).
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
        )
    }

    /// Parses Docker's state word; unknown words count as `dead` (not up, not trusted).
    pub fn from_docker(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            _ => ContainerState::Dead,
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("state serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

/// What the storage root holds, as read: every record gemctl keeps there, each
/// either understood or listed in [`Storage::damage`]. Reading never guesses: a
/// record that is missing where it is required, empty or corrupt is damage, and the
/// planner refuses to act on a host with damage (I3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// The generation gemctl last made live (`<storage>/.gemctl/live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<u64>,
    /// One entry per `<storage>/<n>/` directory.
    #[serde(default)]
    pub generations: Vec<GenerationData>,
    /// Set by `gemctl rollback`: hold the host on a generation while the spec
    /// still names the one rolled back from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
    /// Every generation that was ever given the public ports or recorded live
    /// (`<storage>/.gemctl/served.json`); `None` when there is no such record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<BTreeSet<u64>>,
    /// What the front door forwards to (`<storage>/.gemctl/front/state.json`);
    /// `None` when there is no such record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<crate::front::FrontState>,
    /// State files that could not be trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damage: Vec<Damage>,
    /// The throwaway copies with a directory under the storage root
    /// (`preview`, `check`, `drill`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throwaways: Vec<String>,
    /// The throwaway copies a running gemctl is making, running or discarding
    /// right now (its in-use lock is held: `throwaway::hold`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throwaways_in_use: Vec<String>,
    /// The preview's record (`<storage>/preview/record.json`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::throwaway::Record>,
}

/// A state file gemctl cannot trust: what it is, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Damage {
    /// The file.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
    /// How to put it right.
    pub fix: String,
}

/// A pin (`<storage>/.gemctl/pin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The generation the host is held on.
    pub generation: u64,
    /// The spec's generation when the pin was made; the pin lapses when it changes.
    pub spec_generation: u64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Who and why, one line.
    pub reason: String,
    /// Set by `gemctl restore`: the backup the pinned generation is made from. Such
    /// a pin holds while the spec's generation is at most the pinned one, and a
    /// pinned generation without data is (re)built from this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
}

impl Pin {
    /// Whether the pin still holds for a spec asking for generation `desired`: a
    /// rollback pin until the spec's generation changes, a restore pin until the
    /// spec's generation moves past the restored one.
    pub fn applies(&self, desired: u64) -> bool {
        if self.restore_from.is_some() {
            desired <= self.generation
        } else {
            desired == self.spec_generation
        }
    }
}

/// The file under `<storage>/.gemctl/` holding the pin.
pub const PIN_FILE: &str = "pin";
/// The file under `<storage>/.gemctl/` listing every generation that served.
pub const SERVED_FILE: &str = "served.json";

/// A generation's directory under the storage root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GenerationDataRepr")]
pub struct GenerationData {
    /// The generation number (the directory's name).
    pub generation: u64,
    /// What its marker file says.
    pub marker: Marker,
    /// The PostgreSQL major version of its data (`pgdata/PG_VERSION`), `None` when
    /// it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_major: Option<u32>,
}

/// What a generation's marker (`<storage>/<n>/gemctl-ready.json`) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum Marker {
    /// The database was initialised (bootstrap) or copied and verified: it may
    /// serve, and may have served.
    Ready {
        /// The generation whose data was copied in, if any.
        #[serde(default)]
        copied_from: Option<u64>,
    },
    /// No data of its own: the generation runs on generation `db`'s database
    /// (`db.copy: none`). It may serve, and may have served; `db`'s data is kept as
    /// long as this generation is.
    Shares {
        /// The generation whose database (container and data) it runs on.
        db: u64,
    },
    /// gemctl is making this data and no app has used it: written before the data
    /// directory existed, so it positively says "never served".
    Preparing,
    /// gemctl gave up on this data before any app was exposed on it (a failed
    /// release or restore): never served, to be cleared away.
    Discarded {
        /// One line: why.
        reason: String,
    },
    /// The directory has no marker: gemctl cannot tell what the data is.
    Missing,
    /// The marker cannot be read or parsed: gemctl cannot tell what the data is.
    Unreadable {
        /// What is wrong with it.
        problem: String,
    },
}

impl Marker {
    /// Whether the marker positively says the data never served an app.
    pub fn says_never_served(&self) -> bool {
        matches!(self, Marker::Preparing | Marker::Discarded { .. })
    }

    /// Whether gemctl cannot tell what the data is.
    pub fn unknown(&self) -> bool {
        matches!(self, Marker::Missing | Marker::Unreadable { .. })
    }
}

impl GenerationData {
    /// True once the data is complete (or shared) and may serve.
    pub fn ready(&self) -> bool {
        matches!(self.marker, Marker::Ready { .. } | Marker::Shares { .. })
    }

    /// The generation whose database it runs on, when not its own.
    pub fn shares(&self) -> Option<u64> {
        match self.marker {
            Marker::Shares { db } => Some(db),
            _ => None,
        }
    }

    /// The generation whose data was copied in, if any.
    pub fn copied_from(&self) -> Option<u64> {
        match self.marker {
            Marker::Ready { copied_from } => copied_from,
            _ => None,
        }
    }
}

/// A saved observation may carry `ready`/`copied_from` (older gemctl) or `marker`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationDataRepr {
    generation: u64,
    #[serde(default)]
    marker: Option<Marker>,
    #[serde(default)]
    ready: Option<bool>,
    #[serde(default)]
    copied_from: Option<u64>,
    #[serde(default)]
    pg_major: Option<u32>,
}

impl From<GenerationDataRepr> for GenerationData {
    fn from(r: GenerationDataRepr) -> Self {
        let marker = r.marker.unwrap_or(match r.ready {
            Some(true) => Marker::Ready {
                copied_from: r.copied_from,
            },
            _ => Marker::Missing,
        });
        GenerationData {
            generation: r.generation,
            marker,
            pg_major: r.pg_major,
        }
    }
}

/// The marker gemctl writes into `<storage>/<n>/`: `preparing` before the data
/// exists, `ready` once it is complete, `discarded` when given up before serving.
pub const READY_MARKER: &str = "gemctl-ready.json";
/// The file under `<storage>/.gemctl/` naming the live generation.
pub const LIVE_FILE: &str = "live";
/// The directory under the storage root holding gemctl's own records.
pub const STATE_DIR: &str = ".gemctl";

/// Generations that failed their health checks, so they are not retried blindly (I6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// One entry per failed generation; a later failure of the same one replaces it.
    #[serde(default)]
    pub failed: Vec<FailedGeneration>,
}

/// A generation that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedGeneration {
    /// The generation number.
    pub generation: u64,
    /// [`crate::desired::generation_hash`] of the spec that failed.
    pub spec_hash: String,
    /// When it failed (RFC 3339, UTC).
    pub at: String,
    /// One line: why.
    pub reason: String,
    /// The failure report, if one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// The file under `<storage>/.gemctl/` holding the history.
pub const HISTORY_FILE: &str = "history.json";

impl History {
    /// The failure record of a generation, if any.
    pub fn failure(&self, generation: u64) -> Option<&FailedGeneration> {
        self.failed.iter().find(|f| f.generation == generation)
    }
}

/// What `gemctl observe` prints and `gemctl diff --observed` reads back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The host.
    #[serde(flatten)]
    pub observed: Observed,
    /// The failure history.
    #[serde(default)]
    pub history: History,
}
