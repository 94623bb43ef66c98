//! Builds an [`Observation`] of the host: one engine round trip for containers, one
//! for networks, and a read of the storage root and history.

use std::path::Path;

use crate::engine::Engine;
use crate::error::Error;
use crate::observed::{History, Observation, Observed, Storage};
use crate::records;
use crate::spec::Spec;

/// Observes everything the planner needs for `spec`.
pub async fn observe<E: Engine>(engine: &E, spec: &Spec) -> Result<Observation, Error> {
    let (containers, networks) =
        futures_util::try_join!(engine.list_containers(), engine.list_networks())?;
    let mut containers = containers;
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut networks = networks;
    networks.sort();
    let (storage, history) = read_state(&spec.storage)?;
    Ok(Observation {
        observed: Observed {
            containers,
            networks,
            storage,
        },
        history,
    })
}

/// Reads the storage root and the failure history; a history that cannot be
/// trusted is listed with the storage's damage.
pub fn read_state(root: &Path) -> Result<(Storage, History), Error> {
    let mut storage = read_storage(root)?;
    let (history, damage) = records::read_history(root);
    storage.damage.extend(damage);
    Ok((storage, history))
}

/// Reads the storage root's generations, markers and records.
pub fn read_storage(root: &Path) -> Result<Storage, Error> {
    records::read_storage(root)
}

/// Reads a saved observation (`gemctl observe` output).
pub fn read_saved(path: &Path) -> Result<Observation, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a saved observation ({e}); make one with `gemctl observe -f SPEC > {}`",
            path.display(),
            path.display()
        ))
    })
}
