//! gemctl's own records on the host, under the storage root: the ready marker of
//! each generation's data, the live pointer, the failure history and failure
//! reports. Every write goes to a temporary name first and is renamed into place,
//! so a crash never leaves a half-written record.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Error;
use crate::observed::{
    FailedGeneration, HISTORY_FILE, History, LIVE_FILE, PIN_FILE, Pin, READY_MARKER, ReadyMarker,
    STATE_DIR,
};

/// Writes `bytes` to `path` atomically (temporary file + rename), creating parents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create", e))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, "write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "write", e))
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("serialisable");
    v.push(b'\n');
    v
}

/// Marks `<storage>/<n>/` as holding complete data.
pub fn mark_ready(generation_dir: &Path, copied_from: Option<u64>) -> Result<(), Error> {
    write_atomic(
        &generation_dir.join(READY_MARKER),
        &json(&ReadyMarker { copied_from }),
    )
}

/// Withdraws the ready marker: the data is to be cleared away, not served.
pub fn unmark_ready(generation_dir: &Path) -> Result<(), Error> {
    let path = generation_dir.join(READY_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, "remove", e)),
    }
}

/// Records the live generation.
pub fn set_live(storage: &Path, generation: u64) -> Result<(), Error> {
    write_atomic(
        &storage.join(STATE_DIR).join(LIVE_FILE),
        format!("{generation}\n").as_bytes(),
    )
}

/// Pins the host to a generation (see [`Pin`]).
pub fn set_pin(storage: &Path, pin: &Pin) -> Result<(), Error> {
    write_atomic(&storage.join(STATE_DIR).join(PIN_FILE), &json(pin))
}

/// Removes the pin; true if there was one.
pub fn clear_pin(storage: &Path) -> Result<bool, Error> {
    let path = storage.join(STATE_DIR).join(PIN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, "remove", e)),
    }
}

/// Adds (or replaces) a failed generation in the history.
pub fn record_failure(storage: &Path, failure: FailedGeneration) -> Result<(), Error> {
    let mut history =
        History::read(storage).map_err(|e| Error::io(storage, "read the history", e))?;
    history
        .failed
        .retain(|f| f.generation != failure.generation);
    history.failed.push(failure);
    history.failed.sort_by_key(|f| f.generation);
    write_atomic(&storage.join(STATE_DIR).join(HISTORY_FILE), &json(&history))
}

/// Writes a failure report as JSON under `<storage>/.gemctl/failures/`; returns its path.
pub fn write_failure_report<T: Serialize>(
    storage: &Path,
    generation: u64,
    stamp: &str,
    report: &T,
) -> Result<PathBuf, Error> {
    let safe_stamp: String = stamp
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = storage
        .join(STATE_DIR)
        .join("failures")
        .join(format!("generation-{generation}-{safe_stamp}.json"));
    write_atomic(&path, &json(report))?;
    Ok(path)
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
