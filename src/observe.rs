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
    let db_image = spec.db.image.to_string();
    let (containers, networks, db_image_env) = futures_util::try_join!(
        engine.list_containers(),
        engine.list_networks(),
        engine.image_env(&db_image)
    )?;
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
            db_image_major: db_image_env.as_deref().and_then(pg_major),
        },
        history,
    })
}

/// The PostgreSQL major version an image runs: `PG_MAJOR` as the official image
/// sets it, else the version in its `PATH`'s `/usr/lib/postgresql/<major>/bin`
/// (Debian's layout, which the official image shares).
pub fn pg_major(env: &[String]) -> Option<u32> {
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(k)?.strip_prefix('='))
    };
    if let Some(v) = get("PG_MAJOR") {
        return v.trim().parse().ok();
    }
    get("PATH")?.split(':').find_map(|dir| {
        dir.strip_prefix("/usr/lib/postgresql/")?
            .strip_suffix("/bin")?
            .parse()
            .ok()
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

#[cfg(test)]
mod tests {
    use super::pg_major;

    #[test]
    fn the_image_major_comes_from_pg_major_else_from_the_path() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pg_major(&env(&["PG_MAJOR=17", "PATH=/usr/lib/postgresql/15/bin"])),
            Some(17)
        );
        assert_eq!(
            pg_major(&env(&[
                "PATH=/usr/lib/postgresql/15/bin:/usr/bin",
                "LANG=C"
            ])),
            Some(15)
        );
        assert_eq!(pg_major(&env(&["PATH=/usr/local/bin:/usr/bin"])), None);
        assert_eq!(pg_major(&env(&["PG_MAJOR=fifteen"])), None);
        assert_eq!(pg_major(&[]), None);
    }
}
