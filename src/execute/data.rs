//! Steps that touch a generation's data: making its directory, the copy from the
//! previous generation and its verification, the restore of a backup, the removal
//! of data the plan prunes, and the space check before any of it.
//!
//! Not here: how a copy or a restore is done (`crate::copy`, `crate::backup`), and
//! the files under the storage root themselves (`crate::state`).

use std::path::Path;

use super::{Run, StepError};
use crate::copy;
use crate::desired;
use crate::engine::Engine;
use crate::error::Error;
use crate::plan::{Action, Plan};
use crate::state;
use crate::status::human_bytes;

/// What an empty PostgreSQL data directory takes, with room to start.
const FRESH_DB_BYTES: u64 = 64 * 1024 * 1024;

impl<E: Engine> Run<'_, E> {
    /// New data needs room: a fresh database, plus about as much as the data it
    /// is copied from or a few times the backup it is restored from. Refused
    /// before anything is touched, rather than failing in the middle.
    pub(super) fn check_space(&self, plan: &Plan) -> Result<(), Error> {
        let mut need: u64 = 0;
        let mut what = Vec::new();
        for step in &plan.steps {
            match &step.action {
                Action::CreateDb {
                    fresh: true,
                    generation,
                    ..
                } => {
                    need += FRESH_DB_BYTES;
                    what.push(format!(
                        "a fresh database for generation {generation} (about {})",
                        human_bytes(FRESH_DB_BYTES)
                    ));
                }
                Action::CopyData { from, .. } | Action::BaseBackup { from, .. } => {
                    let size = state::dir_size(&desired::data_dir(self.spec, *from));
                    need += size + size / 10;
                    what.push(format!(
                        "a copy of generation {from}'s data ({})",
                        human_bytes(size)
                    ));
                }
                Action::RestoreBackup { backup, .. } => {
                    let size = std::fs::metadata(backup).map(|m| m.len()).unwrap_or(0);
                    need += size * 4;
                    what.push(format!(
                        "the data of backup {backup} ({}, about four times that loaded)",
                        human_bytes(size)
                    ));
                }
                _ => {}
            }
        }
        let storage = &self.spec.storage;
        match state::free_bytes(storage) {
            Some(free) if need > free => Err(Error::Apply(format!(
                "not enough space under {}: {} free, about {} needed for {}. Free some space \
                 (`gemctl status` shows each generation's size; a lower `retain` prunes old \
                 ones) or give the storage a larger file system. Nothing was touched.",
                storage.display(),
                human_bytes(free),
                human_bytes(need),
                what.join(" and ")
            ))),
            _ => Ok(()),
        }
    }

    /// A fresh generation's data directory, made; an existing one's, required.
    pub(super) fn prepare_data(&self, generation: u64, fresh: bool) -> Result<(), Error> {
        let dir = desired::data_dir(self.spec, generation);
        if fresh {
            state::create_fresh_data(&self.spec.storage, generation, &dir)
        } else {
            state::require_data_dir(generation, &dir)
        }
    }

    pub(super) async fn copy_data(&mut self, from: u64, to: u64) -> Result<(), StepError> {
        self.progress(format!(
            "copying generation {from} into {to} (roles, then pg_dump of each database)"
        ));
        let env = super::db_env(self.spec)?;
        copy::copy(self.engine, self.spec, &env, from, to).await?;
        Ok(())
    }

    pub(super) async fn restore_backup(
        &mut self,
        generation: u64,
        backup: &str,
    ) -> Result<(), StepError> {
        self.progress(format!(
            "restoring {backup} into generation {generation} (pg_restore)"
        ));
        let env = super::db_env(self.spec)?;
        crate::backup::restore(self.engine, self.spec, &env, generation, Path::new(backup)).await?;
        Ok(())
    }

    pub(super) async fn verify_copy(&mut self, from: u64, to: u64) -> Result<(), StepError> {
        self.wait_standby_replayed_all(from, to).await?;
        let env = super::db_env(self.spec)?;
        let v = copy::verify(self.engine, self.spec, &env, from, to).await?;
        self.progress(format!(
            "verified {} rows in {} tables of {} databases (count + checksum per table, computed in both servers)",
            v.rows, v.tables, v.databases
        ));
        Ok(())
    }

    pub(super) fn remove_data(&self, generation: u64) -> Result<(), StepError> {
        state::remove_generation_dir(&self.spec.storage, generation)?;
        Ok(())
    }
}
