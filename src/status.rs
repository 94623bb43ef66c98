//! What `gemctl status` reports: the generations on the host, what each one is
//! (live, last good, retained, rolled back from, failed, incomplete, pending), which
//! app serves, and whether the host is in sync. Data only: `cli::status` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desired::{self, Role};
use crate::labels;
use crate::observed::{Container, Marker, Observation};
use crate::plan::{Plan, Refusal};
use crate::spec::Spec;

/// The whole status, as `--output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Project.
    pub project: String,
    /// The engine the status was read from (`endpoint`, `context`, `source`,
    /// `tls`); the command sets it, as it sets `last_copy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<crate::engine_endpoint::Endpoint>,
    /// The generation the spec asks for.
    pub desired: u64,
    /// The generation recorded live.
    pub live: Option<u64>,
    /// The generation whose app is up with its public ports; `None`: no app serves.
    pub serving: Option<u64>,
    /// `in_sync`, `changes_pending` or `refused`.
    pub sync: &'static str,
    /// Steps `gemctl apply` would take.
    pub pending_steps: usize,
    /// Set when `gemctl rollback` pinned the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// Why the desired generation is held back, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Why gemctl would refuse to act, if it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// One entry per generation on the host, newest first.
    pub generations: Vec<GenerationStatus>,
    /// How the last upgrade recorded in the reports copied its data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_copy: Option<crate::execute::CopyFacts>,
    /// The front door, when the spec has one or one is on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front: Option<FrontStatus>,
    /// The preview (`gemctl preview`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewStatus>,
    /// The gemctl holding the project's lock now (who, since, what), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<crate::lock::Holder>,
    /// The throwaway copies a gemctl is making, running or discarding now
    /// (`preview`, `check`, `drill`) and who.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub throwaways_in_use: BTreeMap<String, crate::lock::Holder>,
}

/// The preview of a generation on a copy of live data.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewStatus {
    /// What it is: its generation, the live generation and WAL position it was
    /// copied from, when, its ports, whether it passed its checks. `None`: a
    /// preview was being made (or its maker was killed) and has no record.
    pub record: Option<crate::throwaway::Record>,
    /// Seconds since its copy began.
    pub age_seconds: Option<u64>,
    /// Its containers.
    pub containers: Vec<ContainerStatus>,
}

/// The front door.
#[derive(Debug, Clone, Serialize)]
pub struct FrontStatus {
    /// Its container; `None` when it is not on the host.
    pub container: Option<ContainerStatus>,
    /// The generation it forwards to, by its record.
    pub forwards_to: Option<u64>,
    /// Set while `gemctl maintenance on` holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<crate::front::Maintenance>,
}

/// One generation.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStatus {
    /// Number.
    pub generation: u64,
    /// `live`; `last good` (recorded live, but its app is not serving); `retained`,
    /// `rolled back from`, `failed`, `incomplete`, `discarded` (never served; the
    /// next apply deletes it), `unknown (marker)` (its marker is missing or
    /// unreadable: see `gemctl repair-state`), `pending` (the next apply makes it
    /// live).
    pub status: String,
    /// The app container.
    pub app: Option<ContainerStatus>,
    /// The db container (the shared one's, with `shares_db_of`).
    pub db: Option<ContainerStatus>,
    /// The generation whose database it runs on (`db.copy: none`), when not its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares_db_of: Option<u64>,
    /// Its services' containers (the spec's `services:`), by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStatus>,
    /// `<storage>/<n>/pgdata`, if present.
    pub data_dir: Option<String>,
    /// Its size in bytes.
    pub data_bytes: Option<u64>,
}

/// One replica of a service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The service's name in the spec.
    pub service: String,
    /// Its container.
    pub container: ContainerStatus,
}

impl GenerationStatus {
    /// `worker 2/2, cache 1/1`: each service's replicas up, of those on the host.
    pub fn services_summary(&self) -> String {
        let mut by: Vec<(&str, usize, usize)> = Vec::new();
        for s in &self.services {
            let up = usize::from(s.container.state == "running");
            match by.iter_mut().find(|(n, _, _)| *n == s.service) {
                Some((_, u, t)) => {
                    *u += up;
                    *t += 1;
                }
                None => by.push((&s.service, up, 1)),
            }
        }
        if by.is_empty() {
            return "-".into();
        }
        by.iter()
            .map(|(n, u, t)| format!("{n} {u}/{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One container.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    /// Name.
    pub name: String,
    /// Docker state.
    pub state: String,
    /// Docker health, if the image defines a check.
    pub health: Option<String>,
    /// `public` or `probe` (apps); `behind the front` for the app the front
    /// forwards to.
    pub exposure: Option<String>,
    /// Image.
    pub image: String,
    /// Creation time.
    pub created: Option<String>,
}

fn container_status(c: &Container) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        state: c.state.to_string(),
        health: c.health.clone(),
        exposure: c.labels.get(labels::EXPOSURE).cloned(),
        image: c.image.clone(),
        created: c.created.clone(),
    }
}

/// Builds the status from an observation and what the planner made of it.
pub fn status(spec: &Spec, observation: &Observation, plan: &Result<Plan, Refusal>) -> Status {
    let observed = &observation.observed;
    let live = observed.storage.live;
    let find = |role: Role, g: u64| {
        let name = desired::container_name(spec, role, g);
        observed
            .containers
            .iter()
            .find(|c| c.name == name && c.labels.get(labels::PROJECT) == Some(&spec.project))
    };
    let mut numbers: Vec<u64> = observed
        .storage
        .generations
        .iter()
        .map(|d| d.generation)
        .chain(observed.containers.iter().filter_map(|c| {
            (c.labels.get(labels::PROJECT) == Some(&spec.project))
                .then(|| c.labels.get(labels::GENERATION)?.parse().ok())
                .flatten()
        }))
        .collect();
    let front_container = observed.containers.iter().find(|c| {
        c.name == crate::front::container_name(spec)
            && c.labels.get(labels::PROJECT) == Some(&spec.project)
    });
    let front_state = observed.storage.front.as_ref();
    let forwards_to = front_state.and_then(crate::front::FrontState::live_generation);
    // With a front, the app it forwards to serves while both run; without one, the
    // app that is up with its public ports.
    let serving = if spec.front.is_some() {
        forwards_to.filter(|g| {
            front_container.is_some_and(|c| c.state.is_up())
                && find(Role::App, *g).is_some_and(|a| a.state.is_up())
        })
    } else {
        observed
            .containers
            .iter()
            .filter(|c| c.is_public_app_of(&spec.project) && c.state.is_up())
            .filter_map(Container::generation)
            .max()
    };
    let front = (spec.front.is_some() || front_container.is_some()).then(|| FrontStatus {
        container: front_container.map(container_status),
        forwards_to,
        maintenance: front_state.and_then(|f| f.maintenance.clone()),
    });
    // The generation `gemctl apply` would make live: a newer one than the live one
    // is then an upgrade under way, not one rolled back from.
    let target = plan.as_ref().map_or(spec.generation.0, |p| p.target);
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    let generations = numbers
        .into_iter()
        .map(|g| {
            let data = observed
                .storage
                .generations
                .iter()
                .find(|d| d.generation == g);
            let shares = data.and_then(|d| d.shares());
            let dir = desired::data_dir(spec, g);
            let status = if data.is_some_and(|d| d.marker.unknown()) {
                "unknown (marker)"
            } else if observation.history.failure(g).is_some() && live != Some(g) {
                "failed"
            } else if live == Some(g) && serving == Some(g) {
                "live"
            } else if live == Some(g) {
                "last good"
            } else if data.is_some_and(|d| matches!(d.marker, Marker::Discarded { .. })) {
                "discarded"
            } else if !data.is_some_and(|d| d.ready()) {
                "incomplete"
            } else if live.is_some_and(|l| g > l) && g != target {
                "rolled back from"
            } else if live.is_some_and(|l| g < l) {
                "retained"
            } else {
                "pending"
            };
            GenerationStatus {
                generation: g,
                status: status.to_string(),
                app: find(Role::App, g).map(|c| {
                    let mut s = container_status(c);
                    if spec.front.is_some() && forwards_to == Some(g) {
                        s.exposure = Some("behind the front".into());
                    }
                    s
                }),
                db: find(Role::Db, shares.unwrap_or(g)).map(container_status),
                services: {
                    let mut services: Vec<ServiceStatus> = observed
                        .containers
                        .iter()
                        .filter(|c| {
                            let label = |k: &str| c.labels.get(k).map(String::as_str);
                            label(labels::PROJECT) == Some(spec.project.as_str())
                                && label(labels::ROLE) == Some(labels::ROLE_SERVICE)
                                && c.generation() == Some(g)
                        })
                        .map(|c| ServiceStatus {
                            service: c.labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                            container: container_status(c),
                        })
                        .collect();
                    services.sort_by(|a, b| a.container.name.cmp(&b.container.name));
                    services
                },
                shares_db_of: shares,
                data_bytes: data
                    .filter(|_| shares.is_none())
                    .map(|_| crate::state::dir_size(&dir)),
                data_dir: data
                    .filter(|_| shares.is_none())
                    .map(|_| dir.display().to_string()),
            }
        })
        .collect();
    let pinned = plan.as_ref().ok().and_then(|p| p.pinned.clone());
    let (sync, pending_steps, hold, refusal) = match plan {
        Ok(p) if p.steps.is_empty() && p.hold.is_none() => ("in_sync", 0, None, None),
        Ok(p) => ("changes_pending", p.steps.len(), p.hold.clone(), None),
        Err(r) => ("refused", 0, None, Some(r.clone())),
    };
    Status {
        project: spec.project.clone(),
        engine: None,
        desired: spec.generation.0,
        live,
        serving,
        sync,
        pending_steps,
        pinned,
        hold,
        refusal,
        generations,
        last_copy: None,
        front,
        locked_by: crate::lock::held_by(&spec.storage).and_then(Result::ok),
        throwaways_in_use: crate::throwaway::Kind::ALL
            .into_iter()
            .filter_map(|k| {
                crate::throwaway::in_use_by(&spec.storage, k).map(|h| (k.name().to_string(), h))
            })
            .collect(),
        preview: preview_status(spec, observation),
    }
}

fn preview_status(spec: &Spec, observation: &Observation) -> Option<PreviewStatus> {
    use crate::throwaway::{Kind, kind_by_name, read_record};
    let containers: Vec<ContainerStatus> = observation
        .observed
        .containers
        .iter()
        .filter(|c| {
            c.labels.get(labels::PROJECT) == Some(&spec.project)
                && kind_by_name(spec, &c.name) == Some(Kind::Preview)
        })
        .map(container_status)
        .collect();
    let on_disk = observation
        .observed
        .storage
        .throwaways
        .iter()
        .any(|k| k == "preview");
    if containers.is_empty() && !on_disk {
        return None;
    }
    let record = read_record(spec, Kind::Preview);
    let age_seconds = record.as_ref().and_then(|r| {
        let at = humantime::parse_rfc3339(&r.copied_at).ok()?;
        Some(
            std::time::SystemTime::now()
                .duration_since(at)
                .ok()?
                .as_secs(),
        )
    });
    Some(PreviewStatus {
        record,
        age_seconds,
        containers,
    })
}

/// `47.8 MB`: decimal (SI) units, one decimal.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().si().to_string()
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_keeps_its_decimal_format() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(47_812_345), "47.8 MB");
        assert_eq!(human_bytes(5_000_000_000_000), "5.0 TB");
    }
}
