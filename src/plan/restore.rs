//! Restore: `gemctl restore` pinned the host to a new generation made from a backup.
//! Its data is (re)built from that backup whenever it is not on the host.

use super::Action;
use super::builder::Builder;
use super::recognise::Gen;

/// Makes generation `target`'s data from `backup`.
pub(super) fn restore(b: &mut Builder, target: u64, tgen: &Gen, backup: &str) {
    // The restore pin names this very generation: what an interrupted restore left of
    // it is rebuilt from the backup, so the pin does not keep it.
    let pinned = b.evidence.pinned.take();
    b.start_afresh(target, tgen);
    b.evidence.pinned = pinned;
    b.push(
        Action::RestoreBackup {
            generation: target,
            backup: backup.to_string(),
        },
        "the restored generation starts from the backup",
    );
    b.push(
        Action::MarkReady {
            generation: target,
            copied_from: None,
        },
        "the backup is restored",
    );
}
