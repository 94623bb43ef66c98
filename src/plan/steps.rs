//! What a plan is made of: the [`Action`]s the executor knows how to carry out, each
//! in a [`Step`] with its reason, and how each shows in `gemctl diff`. Not how steps
//! are chosen: that is the planner's, through its `Builder`.

use serde::{Deserialize, Serialize};

/// One step and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// One line saying why.
    pub reason: String,
}

/// Everything the executor knows how to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the private bridge network.
    CreateNetwork {
        /// Network name.
        network: String,
    },
    /// Create and start a db container; `fresh` makes an empty data directory first.
    CreateDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
        /// Whether the data directory is new (else the existing data is used).
        fresh: bool,
    },
    /// Start an existing, stopped db container.
    StartDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Wait until the database accepts queries.
    WaitDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Stop an app container (kept for rollback).
    StopApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Stop a db container (its data is kept).
    StopDb {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Copy every database and role from one generation's db to another's.
    CopyData {
        /// Source generation (only read, I2).
        from: u64,
        /// Destination generation.
        to: u64,
    },
    /// Load a backup made by `gemctl backup` into a generation's fresh database
    /// (its checksum is verified before any step runs).
    RestoreBackup {
        /// Generation.
        generation: u64,
        /// The backup file.
        backup: String,
    },
    /// Compare the copy with its source, table by table.
    VerifyCopy {
        /// Source generation.
        from: u64,
        /// Destination generation.
        to: u64,
    },
    /// Record that a generation's data is complete.
    MarkReady {
        /// Generation.
        generation: u64,
        /// Where its data came from (`None`: a fresh database).
        copied_from: Option<u64>,
    },
    /// Record that a generation has no data of its own and runs on an older
    /// generation's database (`db.copy: none`).
    ShareDb {
        /// Generation.
        generation: u64,
        /// The generation whose database it runs on.
        db: u64,
    },
    /// Create and start the app with only its health ports, on 127.0.0.1.
    CreateAppProbe {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Start an existing, stopped app container (already public).
    StartApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Run the spec's health checks against the app.
    CheckHealth {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Recreate the app with all its public ports.
    ExposeApp {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Record which generation is live.
    SetLive {
        /// Generation.
        generation: u64,
    },
    /// Create and start one replica of a service, on the private network only.
    CreateService {
        /// Generation.
        generation: u64,
        /// The service's name.
        service: String,
        /// Container name.
        container: String,
    },
    /// Start an existing, stopped replica of a service.
    StartService {
        /// Generation.
        generation: u64,
        /// The service's name.
        service: String,
        /// Container name.
        container: String,
    },
    /// Stop a replica of a service (kept for rollback).
    StopService {
        /// Generation.
        generation: u64,
        /// The service's name.
        service: String,
        /// Container name.
        container: String,
    },
    /// Run a service's health checks against every replica (without checks: see
    /// each stay running for `settle`).
    CheckService {
        /// Generation.
        generation: u64,
        /// The service's name.
        service: String,
    },
    /// Remove a throwaway copy (its containers and `<storage>/<kind>/`): a
    /// preview's testers' writes are not production's.
    DiscardThrowaway {
        /// `preview` or `check`.
        kind: String,
    },
    /// Remove a container gemctl made.
    RemoveContainer {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
        /// `app`, `db` or `copy`.
        role: String,
    },
    /// Delete a generation's directory under the storage root.
    RemoveData {
        /// Generation.
        generation: u64,
    },
    /// Let a db accept replication connections from the private network (a line in
    /// its `pg_hba.conf`, then a reload); drop replication slots an interrupted
    /// apply left in it. Its configuration changes, its table data is only read.
    AllowReplication {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Make a generation's data directory a base backup of another generation's
    /// running db with PostgreSQL's low-level backup API (a replication slot, then
    /// `pg_backup_start(fast)` held in one session while gemctl copies the data
    /// directory on the host, then `pg_backup_stop()`'s label as `backup_label`),
    /// set up to start as its standby (it streams its WAL from the slot).
    BaseBackup {
        /// Source generation (only read, I2).
        from: u64,
        /// Destination generation.
        to: u64,
    },
    /// Wait until the standby streams from its primary and has replayed close to
    /// the primary's current WAL position; then drop the base backup's slot.
    WaitCatchUp {
        /// The primary's generation.
        from: u64,
        /// The standby's generation.
        to: u64,
    },
    /// The primary's clean shutdown: `CHECKPOINT`, then a fast shutdown with time
    /// to finish (its WAL sender ships everything to the standby on the way).
    StopPrimary {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Confirm from the primary's control data that it shut down cleanly, that the
    /// standby is its copy (same system identifier), and wait until the standby has
    /// replayed past the primary's shutdown checkpoint.
    WaitReplay {
        /// The primary's generation.
        from: u64,
        /// The standby's generation.
        to: u64,
    },
    /// Promote the standby, remove its standby settings and password file, and check
    /// that it accepts writes.
    Promote {
        /// Generation.
        generation: u64,
        /// Container name.
        container: String,
    },
    /// Create and start the front door (removing an outdated one first), forwarding
    /// where its record says, and wait until its runtime API answers.
    CreateFront {
        /// Container name.
        container: String,
        /// Whether a front made from another spec is removed first.
        replace: bool,
    },
    /// Start the stopped front door and wait until its runtime API answers.
    StartFront {
        /// Container name.
        container: String,
    },
    /// Remove the front door: the spec has none.
    RemoveFront {
        /// Container name.
        container: String,
    },
    /// Point the front's idle slot at a generation's app; no traffic moves.
    PrepareFront {
        /// Generation.
        generation: u64,
        /// The app container the slot names.
        container: String,
    },
    /// Hold new connections at the front instead of forwarding them to a
    /// generation's app, which is about to stop.
    HoldFront {
        /// The generation the front forwarded to.
        generation: u64,
    },
    /// Send new connections, and those the front holds, to a generation's app.
    SwitchFront {
        /// Generation.
        generation: u64,
        /// The app container.
        container: String,
    },
    /// Wait until the connections still open to a generation's app (the front
    /// switched away from it) have finished, for up to `front.drain`.
    DrainFront {
        /// The generation the front forwarded to before.
        generation: u64,
    },
}

/// How a step shows in `gemctl diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Something starts or is created (`+`).
    Add,
    /// Something stops or is removed (`-`).
    Remove,
    /// Something changes or is checked (`~`).
    Change,
}

impl Mark {
    /// The character shown.
    pub fn symbol(self) -> char {
        match self {
            Mark::Add => '+',
            Mark::Remove => '-',
            Mark::Change => '~',
        }
    }
}

impl Action {
    /// `+`, `-` or `~`.
    pub fn mark(&self) -> Mark {
        match self {
            Action::CreateNetwork { .. }
            | Action::CreateDb { .. }
            | Action::StartDb { .. }
            | Action::CreateAppProbe { .. }
            | Action::StartApp { .. }
            | Action::CreateService { .. }
            | Action::StartService { .. }
            | Action::CreateFront { .. }
            | Action::StartFront { .. } => Mark::Add,
            Action::BaseBackup { .. } => Mark::Add,
            Action::StopApp { .. }
            | Action::StopDb { .. }
            | Action::StopPrimary { .. }
            | Action::StopService { .. }
            | Action::RemoveContainer { .. }
            | Action::RemoveFront { .. }
            | Action::DiscardThrowaway { .. }
            | Action::RemoveData { .. } => Mark::Remove,
            _ => Mark::Change,
        }
    }

    /// One line describing the action.
    pub fn describe(&self) -> String {
        match self {
            Action::CreateNetwork { network } => format!("create network {network}"),
            Action::CreateDb {
                container, fresh, ..
            } => {
                if *fresh {
                    format!("start {container} on a fresh data directory")
                } else {
                    format!("start {container} on its existing data")
                }
            }
            Action::StartDb { container, .. } => format!("start {container}"),
            Action::WaitDb { container, .. } => {
                format!("wait until {container} accepts queries")
            }
            Action::StopApp { container, .. } => format!("stop {container}"),
            Action::StopDb { container, .. } => format!("stop {container} (data kept)"),
            Action::CopyData { from, to } => {
                format!("copy data of generation {from} into generation {to}")
            }
            Action::RestoreBackup { generation, backup } => {
                format!("restore backup {backup} into generation {generation}")
            }
            Action::VerifyCopy { from, to } => {
                format!("verify generation {to}'s data against generation {from}")
            }
            Action::MarkReady {
                generation,
                copied_from,
            } => match copied_from {
                Some(from) => {
                    format!("record generation {generation}'s data as ready (copied from {from})")
                }
                None => format!("record generation {generation}'s data as ready (fresh)"),
            },
            Action::ShareDb { generation, db } => format!(
                "record that generation {generation} runs on generation {db}'s database (no copy)"
            ),
            Action::CreateAppProbe { container, .. } => {
                format!("start {container} with its health ports on 127.0.0.1 only")
            }
            Action::StartApp { container, .. } => format!("start {container}"),
            Action::CheckHealth { container, .. } => format!("check health of {container}"),
            Action::ExposeApp { container, .. } => {
                format!("expose {container} on its public ports")
            }
            Action::SetLive { generation } => format!("record generation {generation} as live"),
            Action::CreateService {
                service, container, ..
            } => format!("start {container} (service {service}, private network only)"),
            Action::StartService { container, .. } => format!("start {container}"),
            Action::StopService { container, .. } => format!("stop {container}"),
            Action::CheckService {
                generation,
                service,
            } => format!("check service {service} of generation {generation}"),
            Action::RemoveContainer { container, .. } => format!("remove {container}"),
            Action::DiscardThrowaway { kind } => {
                format!("discard the {kind} (its containers and its copy of the data)")
            }
            Action::RemoveData { generation } => {
                format!("delete the data of generation {generation}")
            }
            Action::AllowReplication { container, .. } => {
                format!("allow replication from the private network in {container}")
            }
            Action::BaseBackup { from, to } => {
                format!(
                    "base backup of generation {from} into generation {to} (pg_backup_start, \
                     files copied on the host, pg_backup_stop)"
                )
            }
            Action::WaitCatchUp { from, to } => {
                format!("wait until generation {to} has caught up with generation {from}")
            }
            Action::StopPrimary { container, .. } => {
                format!("checkpoint and shut down {container} cleanly (data kept)")
            }
            Action::WaitReplay { from, to } => format!(
                "wait until generation {to} has replayed generation {from}'s shutdown checkpoint"
            ),
            Action::Promote { container, .. } => {
                format!("promote {container} and check that it accepts writes")
            }
            Action::CreateFront { container, replace } => {
                if *replace {
                    format!("make {container} again (its public ports close for a moment)")
                } else {
                    format!("start {container} on the public ports")
                }
            }
            Action::StartFront { container } => format!("start {container}"),
            Action::HoldFront { generation } => {
                format!("hold new requests at the front (generation {generation}'s app stops)")
            }
            Action::RemoveFront { container } => format!("remove {container}"),
            Action::PrepareFront { container, .. } => {
                format!("point the front's idle slot at {container}")
            }
            Action::SwitchFront { container, .. } => {
                format!("switch the front to {container} (held requests go there)")
            }
            Action::DrainFront { generation } => format!(
                "let the requests open to generation {generation}'s app finish (up to front.drain)"
            ),
        }
    }
}
