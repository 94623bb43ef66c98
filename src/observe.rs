//! Builds an [`Observation`] of the host: one engine round trip for containers, one
//! for networks, and the storage root and history as [`crate::state`] reads them.

use std::path::Path;

use crate::engine::Engine;
use crate::error::Error;
use crate::observed::{Observation, Observed};
use crate::spec::Spec;
use crate::state;

/// Observes everything the planner needs for `spec`.
pub async fn observe<E: Engine>(engine: &E, spec: &Spec) -> Result<Observation, Error> {
    let (containers, networks) =
        futures_util::try_join!(engine.list_containers(), engine.list_networks())?;
    let mut containers = containers;
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut networks = networks;
    networks.sort();
    let (storage, history) = state::read_state(&spec.storage)?;
    Ok(Observation {
        observed: Observed {
            containers,
            networks,
            storage,
        },
        history,
    })
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
