//! The steps of the streamed upgrade (see `plan::stream`): each waits, shows its
//! progress and says what it measured (bytes copied, the lag at the freeze). How
//! the databases are worked on is [`crate::stream`]'s.

use std::time::{Duration, Instant};

use super::{Event, Run, StepError};
use crate::copy::DbCredentials;
use crate::desired::{self, Role};
use crate::engine::Engine;
use crate::error::Error;
use crate::state;
use crate::status::human_bytes;
use crate::stream;

/// How long the standby may take to come close to its primary.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long the standby may take to replay the primary's last WAL, in the freeze.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);
/// The primary's time to shut down cleanly before Docker kills it.
const PRIMARY_STOP_GRACE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

impl<E: Engine> Run<'_, E> {
    fn creds(&self) -> Result<DbCredentials, Error> {
        Ok(DbCredentials::from_env(&super::db_env(self.spec)?))
    }

    pub(super) async fn allow_replication(&mut self, container: &str) -> Result<(), StepError> {
        let creds = self.creds()?;
        let added = stream::allow_replication(self.engine, container, &creds).await?;
        self.progress(if added {
            format!("{container} now accepts replication from the private network")
        } else {
            format!("{container} already accepted replication")
        });
        Ok(())
    }

    /// The base backup, with the bytes copied so far as progress.
    pub(super) async fn base_backup(&mut self, from: u64, to: u64) -> Result<(), StepError> {
        let spec = self.spec;
        state::create_fresh_data(&spec.storage, to, &desired::data_dir(spec, to))?;
        let creds = self.creds()?;
        let engine = self.engine;
        let dir = desired::data_dir(spec, to);
        let started = Instant::now();
        let backup = stream::base_backup(engine, spec, &creds, from, to);
        tokio::pin!(backup);
        let done = loop {
            tokio::select! {
                done = &mut backup => break done,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    self.progress(format!(
                        "base backup of generation {from}: {} copied ({}s)",
                        human_bytes(state::dir_size(&dir)),
                        started.elapsed().as_secs()
                    ));
                }
            }
        };
        let timing = done?;
        let bytes = state::dir_size(&dir);
        self.progress(format!(
            "base backup of generation {from}: {} in {:.1}s (backup start in generation \
             {from} {:.2}s, {}file copy {:.2}s of {}, backup stop and standby settings {:.2}s; \
             held in {})",
            human_bytes(bytes),
            started.elapsed().as_secs_f64(),
            timing.start.as_secs_f64(),
            timing.pg_backup_start.map_or(String::new(), |d| format!(
                "of which pg_backup_start {:.2}s, ",
                d.as_secs_f64()
            )),
            timing.copy.as_secs_f64(),
            human_bytes(timing.bytes),
            timing.stop.as_secs_f64(),
            timing.held_in,
        ));
        (self.on_event)(Event::Copy {
            facts: super::CopyFacts {
                bytes: Some(bytes),
                ..Default::default()
            },
        });
        Ok(())
    }

    /// Waits until the standby streams and its replay is close to the primary's
    /// position (then drops the base backup's slot); the lag is the progress.
    pub(super) async fn wait_catch_up(&mut self, from: u64, to: u64) -> Result<(), StepError> {
        let creds = self.creds()?;
        let started = Instant::now();
        let mut slot_dropped = false;
        let mut last_shown = Instant::now();
        loop {
            let lag = stream::lag(self.engine, self.spec, &creds, from, to).await?;
            // The slot keeps db-n's WAL from before the base backup's checkpoint
            // until the standby has received it all but the last moments.
            if lag.streaming && !slot_dropped && lag.bytes < stream::CATCH_UP_BYTES {
                stream::drop_slot(self.engine, self.spec, &creds, from, to).await?;
                slot_dropped = true;
            }
            if slot_dropped && lag.bytes < stream::CATCH_UP_BYTES {
                // While app-n serves: the shutdown checkpoint in the freeze then only
                // writes what the last moments dirtied.
                let primary = desired::container_name(self.spec, Role::Db, from);
                let checkpoint = Instant::now();
                stream::checkpoint(self.engine, &primary, &creds).await?;
                self.progress(format!(
                    "generation {to} streams from generation {from}, {} behind; checkpoint \
                     of {primary} before the freeze in {:.1}s",
                    human_bytes(lag.bytes),
                    checkpoint.elapsed().as_secs_f64()
                ));
                (self.on_event)(Event::Copy {
                    facts: super::CopyFacts {
                        lag_bytes: Some(lag.bytes),
                        ..Default::default()
                    },
                });
                return Ok(());
            }
            if started.elapsed() > CATCH_UP_TIMEOUT {
                return Err(Error::Apply(format!(
                    "generation {to}'s database did not catch up with generation {from}'s \
                     within {}s ({}, {} behind). Look at `docker logs {}`",
                    CATCH_UP_TIMEOUT.as_secs(),
                    if lag.streaming {
                        "streaming"
                    } else {
                        "not streaming"
                    },
                    human_bytes(lag.bytes),
                    desired::container_name(self.spec, Role::Db, to)
                ))
                .into());
            }
            if last_shown.elapsed() > Duration::from_secs(1) {
                last_shown = Instant::now();
                self.progress(format!(
                    "generation {to} is {} behind generation {from}{}",
                    human_bytes(lag.bytes),
                    if lag.streaming {
                        ""
                    } else {
                        " (not streaming yet)"
                    }
                ));
            }
            tokio::time::sleep(POLL * 4).await;
        }
    }

    pub(super) async fn stop_primary(&mut self, container: &str) -> Result<(), StepError> {
        stream::stop_primary(self.engine, container, PRIMARY_STOP_GRACE).await?;
        Ok(())
    }

    /// Reads the primary's control data (clean shutdown, its last checkpoint), checks
    /// that the standby is its copy, and waits until the standby replayed past it.
    /// In the freeze: the control file is read from the host when gemctl may (no
    /// container), and the standby waits in one session (no round trip per poll);
    /// `pg_controldata` in a one-shot container only when the host's read is not
    /// confirmed by the standby's system identifier.
    pub(super) async fn wait_replay(&mut self, from: u64, to: u64) -> Result<(), StepError> {
        let creds = self.creds()?;
        let spec = self.spec;
        let standby = desired::container_name(spec, Role::Db, to);
        let started = Instant::now();
        let read = stream::read_control_file(&desired::data_dir(spec, from))
            .filter(|c| c.state == "shut down");
        let mut seen = None;
        if let Some(c) = &read {
            let (system, replayed) = stream::wait_replayed_past(
                self.engine,
                &standby,
                &creds,
                &c.system_identifier,
                c.checkpoint,
                REPLAY_TIMEOUT,
            )
            .await?;
            // The system identifier (64 bits) confirms the host's read of the layout.
            if system == c.system_identifier {
                seen = Some((c.clone(), replayed));
            }
        }
        let (control, replayed) = match seen {
            Some(s) => s,
            None => {
                let control = stream::control_data(self.engine, spec, from, to).await?;
                if control.state != "shut down" {
                    return Err(Error::Apply(format!(
                        "generation {from}'s database did not shut down cleanly (its control \
                         data says {:?}): the standby cannot be known to hold every write",
                        control.state
                    ))
                    .into());
                }
                let (system, replayed) = stream::wait_replayed_past(
                    self.engine,
                    &standby,
                    &creds,
                    &control.system_identifier,
                    control.checkpoint,
                    REPLAY_TIMEOUT,
                )
                .await?;
                if system != control.system_identifier {
                    return Err(Error::Apply(format!(
                        "{standby} is not a copy of generation {from}'s database (system \
                         identifier {system}, generation {from}'s is {})",
                        control.system_identifier
                    ))
                    .into());
                }
                (control, replayed)
            }
        };
        if replayed <= control.checkpoint {
            return Err(Error::Apply(format!(
                "{standby} did not replay generation {from}'s shutdown checkpoint within {}s \
                 ({} short). Look at `docker logs {standby}`",
                REPLAY_TIMEOUT.as_secs(),
                human_bytes(control.checkpoint.saturating_sub(replayed))
            ))
            .into());
        }
        self.progress(format!(
            "{standby} replayed past generation {from}'s shutdown checkpoint ({}) in {}ms",
            stream::format_lsn(control.checkpoint),
            started.elapsed().as_millis()
        ));
        Ok(())
    }

    /// A standby compared row by row (`db.verify: full`) must first have replayed
    /// everything its primary wrote (its app is stopped); other copies are done.
    pub(super) async fn wait_standby_replayed_all(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<(), StepError> {
        let creds = self.creds()?;
        let standby = desired::container_name(self.spec, Role::Db, to);
        let recovering = stream::psql(
            self.engine,
            &standby,
            &creds,
            &["select pg_is_in_recovery()"],
        )
        .await?;
        if recovering.last().map(String::as_str) != Some("t") {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            let lag = stream::lag(self.engine, self.spec, &creds, from, to).await?;
            if lag.bytes == 0 {
                return Ok(());
            }
            if started.elapsed() > REPLAY_TIMEOUT {
                return Err(Error::Apply(format!(
                    "{standby} is still {} behind generation {from} after {}s",
                    human_bytes(lag.bytes),
                    REPLAY_TIMEOUT.as_secs()
                ))
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn promote(&mut self, container: &str) -> Result<(), StepError> {
        let creds = self.creds()?;
        stream::promote(self.engine, self.spec, container, &creds).await?;
        Ok(())
    }
}
