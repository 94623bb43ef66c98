//! Steps that keep gemctl's records under the storage root as the plan goes: the
//! data's marker once it is complete, the generations that served, the live
//! generation, and a failed generation (with its data discarded when it never
//! served). How they are written is [`crate::state`]'s business.

use super::{Run, StepError};
use crate::desired;
use crate::engine::Engine;
use crate::error::Error;
use crate::observed::FailedGeneration;
use crate::state;

impl<E: Engine> Run<'_, E> {
    pub(super) fn mark_ready(
        &self,
        generation: u64,
        copied_from: Option<u64>,
    ) -> Result<(), StepError> {
        state::mark_ready(&desired::generation_dir(self.spec, generation), copied_from)?;
        Ok(())
    }

    /// Adds `generation` to the generations that served: before it is recorded
    /// live, and as soon as it has the public ports.
    pub(super) fn record_served(&self, generation: u64) -> Result<(), StepError> {
        state::record_served(&self.spec.storage, generation)?;
        Ok(())
    }

    pub(super) fn set_live(&self, generation: u64) -> Result<(), StepError> {
        self.record_served(generation)?;
        state::set_live(&self.spec.storage, generation)?;
        Ok(())
    }

    /// Records that `generation` failed, so that the planner returns to the
    /// previous generation and a later run holds it back (I6).
    pub(super) fn record_failed(
        &self,
        restore: bool,
        failed: &FailedGeneration,
    ) -> Result<(), Error> {
        let spec = self.spec;
        // Given up before it was exposed, its data positively never served and the
        // plan clears it away; once exposed, it stays. The order keeps a kill
        // between two writes safe: a restore is redone, a release stays held.
        let served = state::ensure_served_record(&spec.storage)?;
        let discard = || -> Result<(), Error> {
            if served.contains(&failed.generation) {
                return Ok(());
            }
            state::mark_discarded(
                &desired::generation_dir(spec, failed.generation),
                &format!("failed at {}: {}", failed.at, failed.reason),
            )
        };
        if restore {
            // The spec is not at fault, so no failure is recorded; the restore's
            // pin goes and the next plan returns to the previous generation.
            discard()?;
            state::clear_pin(&spec.storage)?;
        } else {
            state::record_failure(&spec.storage, failed.clone())?;
            discard()?;
        }
        Ok(())
    }
}
