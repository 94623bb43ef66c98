//! Bootstrap: the first generation on a host with no data to start from. Its
//! database starts empty, or from `bootstrap.from_backup`.

use super::Action;
use super::builder::Builder;
use super::recognise::Gen;

/// Makes generation `target`'s data from nothing (or the spec's bootstrap backup).
pub(super) fn bootstrap(b: &mut Builder, target: u64, tgen: &Gen) {
    b.start_afresh(target, tgen);
    if let Some(boot) = &b.spec.bootstrap {
        b.push(
            Action::RestoreBackup {
                generation: target,
                backup: boot.from_backup.display().to_string(),
            },
            "bootstrap.from_backup: the first generation starts from the backup",
        );
    }
    b.push(
        Action::MarkReady {
            generation: target,
            copied_from: None,
        },
        "bootstrap: the database is initialised (and allows replication from the private \
         network, for the next streamed upgrade)",
    );
}
