//! What gemctl sees of the host: containers, networks, the generations on storage,
//! and the history of failed generations. Plain data, serialisable, so a saved
//! observation (`gemctl observe > obs.json`) can be planned against with no engine.

use std::collections::BTreeMap;
use std::path::Path;

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

/// What the storage root holds.
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

/// A generation's directory under the storage root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationData {
    /// The generation number (the directory's name).
    pub generation: u64,
    /// True once the database was initialised (bootstrap) or copied and verified.
    /// Data that is not ready never served an app and may be redone.
    pub ready: bool,
    /// The generation whose data was copied in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<u64>,
}

/// The marker gemctl writes into `<storage>/<n>/` when its data is ready.
pub const READY_MARKER: &str = "gemctl-ready.json";
/// The file under `<storage>/.gemctl/` naming the live generation.
pub const LIVE_FILE: &str = "live";
/// The directory under the storage root holding gemctl's own records.
pub const STATE_DIR: &str = ".gemctl";

/// The ready marker's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyMarker {
    /// Source generation of the copy, `None` for a fresh database.
    pub copied_from: Option<u64>,
}

impl Storage {
    /// Reads the storage root. A missing root is an empty storage (a fresh host).
    pub fn read(root: &Path) -> std::io::Result<Storage> {
        let mut storage = Storage::default();
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(storage),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(generation) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let marker = std::fs::read_to_string(entry.path().join(READY_MARKER))
                .ok()
                .and_then(|t| serde_json::from_str::<ReadyMarker>(&t).ok());
            storage.generations.push(GenerationData {
                generation,
                ready: marker.is_some(),
                copied_from: marker.and_then(|m| m.copied_from),
            });
        }
        storage.generations.sort_by_key(|g| g.generation);
        storage.pin = std::fs::read_to_string(root.join(STATE_DIR).join(PIN_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        storage.live = std::fs::read_to_string(root.join(STATE_DIR).join(LIVE_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        Ok(storage)
    }
}

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
    /// Reads `<storage>/.gemctl/history.json`; missing means no history.
    pub fn read(root: &Path) -> std::io::Result<History> {
        match std::fs::read_to_string(root.join(STATE_DIR).join(HISTORY_FILE)) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(History::default()),
            Err(e) => Err(e),
        }
    }

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
