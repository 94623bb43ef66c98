//! The streamed upgrade n → N, and the choice between it and the dump.
//!
//! [`copy_mode`] decides, from what the shell observed: `db.copy: auto` streams
//! when generation n's data (`PG_VERSION`) and the db image (`PG_MAJOR`) are the
//! same PostgreSQL major version, and dumps otherwise or when either cannot be
//! told; `stream` across major versions is refused.
//!
//! The stream is a transfer of power instead of a copy under a freeze:
//!
//! ```text
//! while app-n serves:  db-n up; AllowReplication n (pg_hba line + reload)
//!                      BaseBackup n → N (N's dir made `preparing`; slot gemctl_N)
//!                      CreateDb N on that data + WaitDb (a hot standby)
//!                      WaitCatchUp n → N (streaming; lag small; the slot dropped)
//! the freeze:          StopApp n; [VerifyCopy with `db.verify: full`]
//!                      StopPrimary n (CHECKPOINT, fast shutdown, 60 s to finish)
//!                      WaitReplay n → N (n shut down cleanly, same system id,
//!                      N replayed past n's shutdown checkpoint)
//!                      Promote N (standby settings and password file removed,
//!                      a write accepted); MarkReady N (copied from n)
//! then as any upgrade: app-N probe, health, expose, live
//! ```
//!
//! # Slots
//!
//! The base backup (PostgreSQL's low-level API: the slot, `pg_backup_start(fast)`
//! held in one session of db-n while gemctl copies the files on the host,
//! `pg_backup_stop()`'s label written as `backup_label`; see
//! `stream::base_backup`) copies no WAL: db-N streams all it needs from the slot.
//! The base backup's physical slot `gemctl_N` lives only on db-n and only from the
//! base backup until the standby has caught up: `WaitCatchUp` drops it once db-N's
//! WAL receiver is streaming and close to db-n's position (db-N does not use a
//! slot; at its shutdown db-n's WAL sender ships everything up to the shutdown
//! checkpoint all the same). A slot a
//! killed or failed run left is dropped by the next `AllowReplication` or the next
//! start of that db (`WaitDb` drops inactive `gemctl_*` slots of a primary), so a
//! db started for a rollback or a fall back holds none, and no stopped data
//! directory is ever written to remove one.
//!
//! # Where a kill leaves the host, and what the next plan does
//!
//! N's marker says `preparing` from the base backup until `MarkReady`, which comes
//! only after the promotion succeeded; no app of N exists before that. So:
//!
//! - **during the base backup, the standby's start or the catch-up**: N is
//!   preparing and never served; app-n and db-n serve untouched. The next plan
//!   removes db-N and N's data (proof: never served) and streams again.
//! - **after app-n stopped, before db-n stopped**: as above; the next plan also
//!   starts app-n again (it is the live generation's and stopped) so that it
//!   serves during the new base backup.
//! - **after db-n stopped, before or after the promotion, before MarkReady**: N is
//!   preparing, its db may even be writable, but nothing ever wrote to it: no app
//!   of N was made. The next plan removes db-N and N's data *first*, then starts
//!   db-n (cleanly shut down, only read) and app-n, and streams again: two
//!   writable databases of the project never run at once.
//! - **after MarkReady (probe, health, exposure)**: N is ready, copied from n; the
//!   cut-over goes on from where it stopped (db-n stays stopped, n's data kept).
//!
//! Any failure (not a kill) from the base backup until N is live falls back
//! (`execute::fall_back`): N is recorded failed and discarded, db-n and app-n run
//! again. db-n's data is never deleted by any of this: it is ready (and live or
//! retained as N's source), which the `Builder` never deletes as debris.

use serde::{Deserialize, Serialize};

use crate::desired::{self, Role};
use crate::observed::Observed;
use crate::spec::{CopyMode, Spec, VerifyMode};

use super::builder::Builder;
use super::recognise::{Gen, Host};
use super::{Action, Problem};

/// How a new generation's data is made from the previous one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Streaming replication, then a switch of about a second.
    Stream,
    /// Dump and restore under a freeze.
    Dump,
    /// No copy: the new generation runs on the previous one's database.
    None,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Stream => "stream",
            Mode::Dump => "dump",
            Mode::None => "none",
        })
    }
}

/// The copy mode a plan uses, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyChoice {
    /// The mode.
    pub mode: Mode,
    /// One line: why.
    pub reason: String,
}

/// The copy mode from generation `from`'s data into the spec's db image, or the
/// problem when the spec asks for a stream that cannot be.
pub fn copy_mode(spec: &Spec, observed: &Observed, from: u64) -> Result<CopyChoice, Problem> {
    let source = observed
        .storage
        .generations
        .iter()
        .find(|g| g.generation == from)
        .and_then(|g| g.pg_major);
    let image = observed.db_image_major;
    let versions = format!(
        "generation {from}'s data is {}, the image {} is {}",
        source.map_or("of an unknown PostgreSQL version".into(), |v| format!(
            "PostgreSQL {v}"
        )),
        spec.db.image,
        image.map_or("of an unknown PostgreSQL version".into(), |v| format!(
            "PostgreSQL {v}"
        )),
    );
    let same = matches!((source, image), (Some(a), Some(b)) if a == b);
    let choice = |mode, reason: String| Ok(CopyChoice { mode, reason });
    match spec.db.copy {
        CopyMode::Dump => choice(Mode::Dump, "db.copy: dump".into()),
        CopyMode::None => choice(Mode::None, "db.copy: none".into()),
        CopyMode::Auto if same => choice(
            Mode::Stream,
            format!("db.copy: auto, and {versions}: the same major version streams"),
        ),
        CopyMode::Auto => choice(
            Mode::Dump,
            format!(
                "db.copy: auto, and {versions}: {}",
                if source.is_none() || image.is_none() {
                    "gemctl cannot tell that they are the same major version, so it dumps"
                } else {
                    "across major versions only a dump carries the data"
                }
            ),
        ),
        CopyMode::Stream if same => choice(Mode::Stream, "db.copy: stream".into()),
        CopyMode::Stream => Err(Problem {
            container: None,
            seen: format!(
                "the spec asks for `db.copy: stream`, but {versions}: streaming replication \
                 only works between the same PostgreSQL major version"
            ),
            fix: "set `db.copy: auto` (or `dump`) to carry the data across major versions by \
                  dump and restore, or use an image of the same major version"
                .into(),
        }),
    }
}

/// Makes generation `target`'s data a promoted standby of generation `from`'s, with
/// the write freeze only around the switch (see the module's docs).
pub(super) fn upgrade(
    b: &mut Builder,
    host: &Host,
    target: u64,
    tgen: &Gen,
    from: u64,
    live: Option<u64>,
) {
    let spec = b.spec;
    let source = host.generation(from);
    let db_n = desired::container_name(spec, Role::Db, from);
    let db_t = desired::container_name(spec, Role::Db, target);
    b.clear_half_made(target, tgen);
    b.ensure_db_up(
        from,
        &source,
        "the base backup and the standby read from it",
    );
    // The live generation runs on `from`'s database: its own, or shared with it.
    let serving = live.filter(|l| host.db_gen(*l) == from);
    let serving_gen = serving.map(|l| host.generation(l)).unwrap_or_default();
    if let Some(l) = serving
        && spec.front.is_some()
    {
        super::front::serve_meanwhile(b, host, &serving_gen, l);
    } else if let Some(l) = serving
        && let Some(app) = serving_gen.app.filter(|a| a.public() && !a.up())
    {
        b.restart_app(
            l,
            &app.c.name.clone(),
            "the live generation's app serves while the new generation follows its data \
             (an interrupted apply stopped it)",
        );
    }
    b.push(
        Action::AllowReplication {
            generation: from,
            container: db_n.clone(),
        },
        "the new generation's database follows this one by streaming replication; only its \
         configuration changes (pg_hba.conf, reload), its data is only read",
    );
    b.push(
        Action::BaseBackup { from, to: target },
        format!(
            "generation {target} starts from a copy of generation {from}'s data files, made \
             while generation {from} serves"
        ),
    );
    b.create_db(
        target,
        false,
        &format!("generation {target}'s database starts as a standby of generation {from}'s"),
    );
    b.push(
        Action::WaitCatchUp { from, to: target },
        "the freeze starts only once the standby is close behind",
    );
    b.stop_other_apps(
        host,
        target,
        "the freeze: writes stop so that the standby can take over everything written",
    );
    if spec.db.verify == VerifyMode::Full {
        b.push(
            Action::VerifyCopy { from, to: target },
            "db.verify: full: every table must have the same rows as the source",
        );
    }
    b.stop_primary(
        from,
        &db_n,
        "its WAL sender ships everything up to the shutdown checkpoint to the standby",
    );
    b.push(
        Action::WaitReplay { from, to: target },
        format!("{db_t} must hold every write {db_n} acknowledged before it takes over"),
    );
    b.push(
        Action::Promote {
            generation: target,
            container: db_t,
        },
        "the standby becomes the writable database; no replication setting or password stays",
    );
    b.push(
        Action::MarkReady {
            generation: target,
            copied_from: Some(from),
        },
        "promoted with every write of the source: same system, replayed past its clean shutdown",
    );
}

#[cfg(test)]
mod tests {
    use super::{Mode, copy_mode};
    use crate::plan::fixture::{observed, ready, spec};
    use crate::spec::CopyMode;

    fn host(source: Option<u32>, image: Option<u32>) -> crate::observed::Observed {
        let mut g = ready(1);
        g.pg_major = source;
        let mut obs = observed(vec![], vec![g]);
        obs.db_image_major = image;
        obs
    }

    fn with_copy(mode: CopyMode) -> crate::spec::Spec {
        let mut s = spec(2);
        s.db.copy = mode;
        s
    }

    #[test]
    fn auto_streams_only_when_both_majors_are_known_and_equal() {
        let auto = with_copy(CopyMode::Auto);
        let c = copy_mode(&auto, &host(Some(15), Some(15)), 1).unwrap();
        assert_eq!(c.mode, Mode::Stream);
        assert!(c.reason.contains("PostgreSQL 15"), "{}", c.reason);

        let c = copy_mode(&auto, &host(Some(15), Some(17)), 1).unwrap();
        assert_eq!(c.mode, Mode::Dump);
        assert!(c.reason.contains("across major versions"), "{}", c.reason);

        for (a, b) in [(None, Some(15)), (Some(15), None), (None, None)] {
            let c = copy_mode(&auto, &host(a, b), 1).unwrap();
            assert_eq!(c.mode, Mode::Dump);
            assert!(c.reason.contains("cannot tell"), "{}", c.reason);
        }
    }

    #[test]
    fn stream_across_or_unknown_majors_is_refused_naming_both() {
        let stream = with_copy(CopyMode::Stream);
        assert_eq!(
            copy_mode(&stream, &host(Some(15), Some(15)), 1)
                .unwrap()
                .mode,
            Mode::Stream
        );
        let p = copy_mode(&stream, &host(Some(15), Some(17)), 1).unwrap_err();
        assert!(
            p.seen.contains("PostgreSQL 15") && p.seen.contains("PostgreSQL 17"),
            "{}",
            p.seen
        );
        let p = copy_mode(&stream, &host(None, Some(17)), 1).unwrap_err();
        assert!(p.seen.contains("unknown"), "{}", p.seen);
    }

    #[test]
    fn dump_is_kept_when_asked_whatever_the_versions() {
        let dump = with_copy(CopyMode::Dump);
        let c = copy_mode(&dump, &host(Some(15), Some(15)), 1).unwrap();
        assert_eq!(c.mode, Mode::Dump);
    }
}
