//! gemctl's state on the host, under the storage root: the generation directories
//! and the marker of each one's data, and under `<storage>/.gemctl/` the live
//! pointer, the record of generations that served, the pin, the failure history,
//! failure reports and apply reports. The one place that reads and writes them; the
//! planner sees what it read as plain data ([`crate::observed`]).
//!
//! Not here: the lock (`crate::lock`), backups and their checksums
//! (`crate::backup`, under the spec's backup directory), and saved observations
//! (`crate::observe`), which are files the operator names.
//!
//! Reading is strict: a record that is empty, corrupt or missing where it is
//! required becomes a [`Damage`] entry naming the file, what is wrong and the fix,
//! never a guess. Every write goes to a temporary name, is synced, and is renamed
//! into place, so a crash never leaves a half-written record.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::front::FrontState;
use crate::observed::{
    Damage, FailedGeneration, GenerationData, HISTORY_FILE, History, LIVE_FILE, Marker, PIN_FILE,
    Pin, READY_MARKER, SERVED_FILE, STATE_DIR, Storage,
};
use crate::spec::{FrontSpec, Spec};

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
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, "write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "write", e))?;
    sync_dir(parent);
    Ok(())
}

/// Makes a rename durable; a directory that cannot be opened is not worth failing for.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("serialisable");
    v.push(b'\n');
    v
}

/// Marks `<storage>/<n>/` as holding complete data.
pub fn mark_ready(generation_dir: &Path, copied_from: Option<u64>) -> Result<(), Error> {
    write_marker(generation_dir, &Marker::Ready { copied_from })
}

/// Makes `<storage>/<n>/` marked as running on generation `db`'s database (made
/// whole or not at all).
pub fn mark_shares(storage: &Path, generation: u64, db: u64) -> Result<(), Error> {
    create_generation_dir_marked(storage, generation, &Marker::Shares { db }).map(drop)
}

/// The generation whose database generation `n` runs on: the one its marker
/// says it shares, else its own (also when the marker is not written yet).
pub fn db_generation(storage: &Path, n: u64) -> u64 {
    match read_marker(&storage.join(n.to_string())) {
        Marker::Shares { db } => db,
        _ => n,
    }
}

/// Marks `<storage>/<n>/` as given up before it served: the next plan clears it away.
pub fn mark_discarded(generation_dir: &Path, reason: &str) -> Result<(), Error> {
    write_marker(
        generation_dir,
        &Marker::Discarded {
            reason: reason.to_string(),
        },
    )
}

fn write_marker(generation_dir: &Path, marker: &Marker) -> Result<(), Error> {
    write_atomic(&generation_dir.join(READY_MARKER), &json(marker))
}

/// Bytes free for an unprivileged writer on the file system holding `path` (or
/// its nearest existing parent); `None` when it cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Creates `<storage>/<n>/` for new data, with its `preparing` marker already in
/// it: the directory is made under a temporary name and renamed into place, so no
/// generation directory ever exists without a marker that says what it is.
pub fn create_generation_dir(storage: &Path, generation: u64) -> Result<PathBuf, Error> {
    create_generation_dir_marked(storage, generation, &Marker::Preparing)
}

/// Makes `<storage>/<n>/` holding `marker`, whole or not at all: the directory is
/// made aside with its marker and renamed into place, so no run killed half-way
/// leaves a generation directory without one.
fn create_generation_dir_marked(
    storage: &Path,
    generation: u64,
    marker: &Marker,
) -> Result<PathBuf, Error> {
    let dir = generation_dir(storage, generation);
    let tmp = storage.join(format!(".{generation}.new"));
    if tmp.exists() {
        // Left by a crash before the rename: it never was a generation.
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, "remove", e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, "create", e))?;
    write_marker(&tmp, marker)?;
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, "create", e))?;
    sync_dir(storage);
    Ok(dir)
}

/// `<storage>/<n>/`.
fn generation_dir(storage: &Path, generation: u64) -> PathBuf {
    storage.join(generation.to_string())
}

/// Makes the directories of a new generation's data: `<storage>/<n>/` with its
/// `preparing` marker, then `data_dir` inside it. The record of what served is made
/// first, so it exists before any data that may be deleted as never served (see
/// `plan::Evidence`). A generation directory already there is refused.
pub fn create_fresh_data(storage: &Path, generation: u64, data_dir: &Path) -> Result<(), Error> {
    let dir = generation_dir(storage, generation);
    if dir.exists() {
        return Err(Error::Apply(format!(
            "{} already exists, but generation {generation} needs a fresh data directory; \
             gemctl never reuses one it did not plan to. Move it away and apply again.",
            dir.display()
        )));
    }
    ensure_served_record(storage)?;
    create_generation_dir(storage, generation)?;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, "create", e))
}

/// An existing generation's data directory, required before its db is made again.
pub fn require_data_dir(generation: u64, data_dir: &Path) -> Result<(), Error> {
    if data_dir.is_dir() {
        return Ok(());
    }
    Err(Error::Apply(format!(
        "generation {generation}'s data directory {} is missing",
        data_dir.display()
    )))
}

/// Deletes `<storage>/<n>/` and everything in it; already gone is done. The
/// directory is first renamed aside (`.<n>.removed`), at once: a run killed while
/// the files go leaves no generation directory with its marker deleted and its
/// data half there. What such a run left aside is deleted here too.
pub fn remove_generation_dir(storage: &Path, generation: u64) -> Result<(), Error> {
    let dir = generation_dir(storage, generation);
    let aside = storage.join(format!(".{generation}.removed"));
    match std::fs::rename(&dir, &aside) {
        Ok(()) => sync_dir(storage),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&dir, "delete", e)),
    }
    let leftovers = std::fs::read_dir(storage)
        .map_err(|e| Error::io(storage, "read", e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".removed"))
        });
    for path in leftovers {
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&path, "delete", e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Bytes under a directory (files only; unreadable entries count as 0).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Records the live generation.
pub fn set_live(storage: &Path, generation: u64) -> Result<(), Error> {
    write_atomic(
        &state_file(storage, LIVE_FILE),
        format!("{generation}\n").as_bytes(),
    )
}

/// Pins the host to a generation (see [`Pin`]).
pub fn set_pin(storage: &Path, pin: &Pin) -> Result<(), Error> {
    write_atomic(&state_file(storage, PIN_FILE), &json(pin))
}

/// Removes the pin; true if there was one.
pub fn clear_pin(storage: &Path) -> Result<bool, Error> {
    let path = state_file(storage, PIN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, "remove", e)),
    }
}

/// Adds `generation` to the record of generations that served (before it is given
/// the public ports, and when it is recorded live). A missing record is started
/// from what the storage shows (see [`ensure_served_record`]).
pub fn record_served(storage: &Path, generation: u64) -> Result<(), Error> {
    let mut served = ensure_served_record(storage)?;
    if served.insert(generation) {
        write_served(storage, &served)?;
    }
    Ok(())
}

/// The record of generations that served, made if missing: a host used by an
/// older gemctl has none, so every generation recorded live or with ready data
/// counts as having served (it may have). A corrupt record is an error.
pub fn ensure_served_record(storage: &Path) -> Result<BTreeSet<u64>, Error> {
    let read = read_storage(storage)?;
    if let Some(d) = read.damage.iter().find(|d| d.file.ends_with(SERVED_FILE)) {
        return Err(Error::Apply(format!(
            "{}: {}; {}",
            d.file, d.problem, d.fix
        )));
    }
    match read.served {
        Some(s) => Ok(s),
        None => {
            let seeded = seed_served(&read);
            write_served(storage, &seeded)?;
            Ok(seeded)
        }
    }
}

/// What may have served, as far as the storage alone shows: the live generation,
/// the pinned one and every generation with ready data.
pub fn seed_served(storage: &Storage) -> BTreeSet<u64> {
    storage
        .generations
        .iter()
        .filter(|g| g.ready())
        .map(|g| g.generation)
        .chain(storage.live)
        .chain(storage.pin.as_ref().map(|p| p.generation))
        .collect()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServedRecord {
    generations: BTreeSet<u64>,
}

/// Writes the record of generations that served.
pub fn write_served(storage: &Path, served: &BTreeSet<u64>) -> Result<(), Error> {
    write_atomic(
        &state_file(storage, SERVED_FILE),
        &json(&ServedRecord {
            generations: served.clone(),
        }),
    )
}

/// Reads the storage root and the failure history; a history that cannot be
/// trusted is listed with the storage's damage.
pub fn read_state(root: &Path) -> Result<(Storage, History), Error> {
    let mut storage = read_storage(root)?;
    let (history, damage) = read_history(root);
    storage.damage.extend(damage);
    Ok((storage, history))
}

/// `<storage>/.gemctl/front/state.json`.
pub fn front_state_file(storage: &Path) -> PathBuf {
    crate::front::dir(storage).join(crate::front::STATE_FILE)
}

/// The front's record, strictly: missing is a front that forwards nowhere yet.
pub fn read_front(storage: &Path) -> Result<FrontState, Error> {
    let mut damage = Vec::new();
    let state = read_front_record(storage, &mut damage);
    match damage.pop() {
        Some(d) => Err(Error::Apply(format!("{} {}: {}", d.file, d.problem, d.fix))),
        None => Ok(state.unwrap_or_default()),
    }
}

/// The front's record as [`read_parsed`] reads every record.
fn read_front_record(root: &Path, damage: &mut Vec<Damage>) -> Option<FrontState> {
    let fix = "the front's record says which generation it forwards to: put back a copy, or \
               remove it and run `gemctl apply`, which points the front at the live \
               generation again";
    read_parsed(&front_state_file(root), fix, damage, |text| {
        serde_json::from_str::<FrontState>(text)
            .map_err(|e| format!("is not a valid front record: {e}"))
    })
}

/// Writes the front's record, then its configuration rendered from it (both
/// atomically), so that a front restarted at any moment comes back as recorded.
pub fn write_front(
    storage: &Path,
    spec: &Spec,
    front: &FrontSpec,
    state: &FrontState,
) -> Result<(), Error> {
    let dir = crate::front::dir(storage);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    write_atomic(&front_state_file(storage), &json(state))?;
    write_front_files(&dir, spec, front, state)
}

/// Writes the files the front reads (configuration last) into `dir`: the front's
/// directory, or a directory where a new configuration is checked first.
pub fn write_front_files(
    dir: &Path,
    spec: &Spec,
    front: &FrontSpec,
    state: &FrontState,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    let files = [
        (crate::front::PAGE_FILE, crate::front::page(front)),
        (crate::front::MAP_FILE, crate::front::map(state)),
        (
            crate::front::MAINT_PAGE_FILE,
            crate::front::maintenance_page(front),
        ),
        (crate::front::LUA_FILE, crate::front::lua(front)),
        (
            crate::front::CONFIG_FILE,
            crate::front::render(spec, front, state),
        ),
    ];
    for (name, text) in files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Reads the storage root: generations and their markers, the live pointer, the
/// pin and the record of generations that served. A missing root is an empty
/// storage (a fresh host). Only an I/O failure of the root itself is an error;
/// every record that cannot be trusted is listed in [`Storage::damage`].
pub fn read_storage(root: &Path) -> Result<Storage, Error> {
    let mut storage = Storage {
        generations: read_generations(root)?,
        throwaways: ["preview", "check", "drill"]
            .into_iter()
            .filter(|k| root.join(k).is_dir())
            .map(String::from)
            .collect(),
        throwaways_in_use: crate::throwaway::Kind::ALL
            .into_iter()
            .filter(|k| crate::throwaway::in_use(root, *k))
            .map(|k| k.name().to_string())
            .collect(),
        preview: std::fs::read_to_string(root.join("preview").join("record.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok()),
        ..Storage::default()
    };
    let damage = &mut storage.damage;
    let live_fix = "run `gemctl repair-state -f SPEC` to rebuild it from the running app's labels";
    storage.live = read_parsed(&state_file(root, LIVE_FILE), live_fix, damage, |text| {
        text.trim().parse::<u64>().map_err(|_| {
            format!(
                "does not hold a generation number (it holds {:?})",
                clip(text)
            )
        })
    });
    let pin_fix = "run `gemctl unpin -f SPEC` to remove it (the host then follows the spec's \
                   generation), or put back the pin `gemctl rollback` wrote";
    storage.pin = read_parsed(&state_file(root, PIN_FILE), pin_fix, damage, |text| {
        serde_json::from_str::<Pin>(text).map_err(|e| format!("is not a valid pin: {e}"))
    });
    let served_fix = "run `gemctl repair-state -f SPEC` to rebuild it (every generation recorded \
                      live, pinned, exposed or with ready data counts as having served)";
    storage.served = read_parsed(&state_file(root, SERVED_FILE), served_fix, damage, |text| {
        serde_json::from_str::<ServedRecord>(text)
            .map(|r| r.generations)
            .map_err(|e| format!("is not a valid record of served generations: {e}"))
    });
    storage.front = read_front_record(root, damage);
    Ok(storage)
}

/// The numbered directories of the storage root and their markers, in order; none
/// when the root is missing.
fn read_generations(root: &Path) -> Result<Vec<GenerationData>, Error> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, "read the storage root", e)),
    };
    let mut generations = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, "read the storage root", e))?;
        let Some(generation) = entry
            .file_name()
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        generations.push(GenerationData {
            generation,
            marker: read_marker(&entry.path()),
            pg_major: read_pg_major(&entry.path()),
        });
    }
    generations.sort_by_key(|g| g.generation);
    Ok(generations)
}

/// The PostgreSQL major version of a generation's data, from `pgdata/PG_VERSION`;
/// `None` when it cannot be read (no data yet, or gemctl may not read it). Only the
/// choice of copy mode uses it, and not knowing chooses the dump.
fn read_pg_major(generation_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(generation_dir.join("pgdata").join("PG_VERSION")).ok()?;
    text.trim().parse().ok()
}

/// Reads `<storage>/.gemctl/history.json`: missing means no history; a history that
/// cannot be trusted is returned as damage, with an empty history beside it that
/// the planner will not act on.
pub fn read_history(root: &Path) -> (History, Option<Damage>) {
    let fix = "restore it from a copy, or run `gemctl repair-state -f SPEC --reset-history` to \
               move it aside and start an empty one (gemctl then forgets which generations failed, \
               and may try one again)";
    let mut damage = Vec::new();
    let history = read_parsed(&state_file(root, HISTORY_FILE), fix, &mut damage, |text| {
        serde_json::from_str(text).map_err(|e| format!("is not a valid history: {e}"))
    });
    (history.unwrap_or_default(), damage.pop())
}

/// A record parsed by `parse`: `None` when it is missing, or when it cannot be
/// trusted — then it is added to `damage`, with what is wrong and `fix`.
fn read_parsed<T>(
    file: &Path,
    fix: &str,
    damage: &mut Vec<Damage>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let problem = match read_record(file) {
        Ok(None) => return None,
        Ok(Some(text)) => match parse(&text) {
            Ok(value) => return Some(value),
            Err(problem) => problem,
        },
        Err(problem) => problem,
    };
    damage.push(self::damage(file, problem, fix));
    None
}

/// A record's text: `None` when missing; an error line when unreadable or empty.
fn read_record(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot be read: {e}")),
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Err("is empty".into()),
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "is not UTF-8 text".into()),
    }
}

/// What a generation directory's marker says; never a guess.
pub fn read_marker(generation_dir: &Path) -> Marker {
    let file = generation_dir.join(READY_MARKER);
    match read_record(&file) {
        Ok(None) => Marker::Missing,
        Err(problem) => Marker::Unreadable { problem },
        Ok(Some(text)) => parse_marker(&text),
    }
}

fn parse_marker(text: &str) -> Marker {
    match serde_json::from_str::<Marker>(text) {
        Ok(m) if !m.unknown() => return m,
        Ok(_) => {
            return Marker::Unreadable {
                problem: "names a state gemctl never writes".into(),
            };
        }
        Err(_) => {}
    }
    // Written by gemctl before markers had a state: `{"copied_from": N|null}`,
    // only ever once the data was ready.
    let legacy = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("copied_from").cloned());
    match legacy {
        Some(serde_json::Value::Null) => Marker::Ready { copied_from: None },
        Some(v) if v.is_u64() => Marker::Ready {
            copied_from: v.as_u64(),
        },
        _ => Marker::Unreadable {
            problem: match serde_json::from_str::<serde_json::Value>(text) {
                Err(e) => format!("is not valid JSON: {e}"),
                Ok(_) => "is JSON but not a marker gemctl wrote".into(),
            },
        },
    }
}

fn damage(file: &Path, problem: String, fix: &str) -> Damage {
    Damage {
        file: file.display().to_string(),
        problem,
        fix: fix.to_string(),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Adds (or replaces) a failed generation in the history.
pub fn record_failure(storage: &Path, failure: FailedGeneration) -> Result<(), Error> {
    let (mut history, damaged) = read_history(storage);
    if let Some(d) = damaged {
        return Err(Error::Apply(format!("{} {}; {}", d.file, d.problem, d.fix)));
    }
    history
        .failed
        .retain(|f| f.generation != failure.generation);
    history.failed.push(failure);
    history.failed.sort_by_key(|f| f.generation);
    write_atomic(&state_file(storage, HISTORY_FILE), &json(&history))
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
    let path =
        state_file(storage, "failures").join(format!("generation-{generation}-{safe_stamp}.json"));
    write_atomic(&path, &json(report))?;
    Ok(path)
}

/// What a failure report written by [`write_failure_report`] holds, as JSON; `None`
/// when it cannot be read (the apply report then only names its path).
pub fn read_failure_report(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `<storage>/.gemctl/<name>`: one of the records named in [`crate::observed`].
pub fn state_file(storage: &Path, name: &str) -> PathBuf {
    storage.join(STATE_DIR).join(name)
}

/// Moves the record `<storage>/.gemctl/<name>` aside to `<name>.bad-<stamp>`, for
/// one that is rebuilt or started afresh; returns where it went, `None` when there
/// was none.
pub fn move_aside(storage: &Path, name: &str, stamp: &str) -> Result<Option<PathBuf>, Error> {
    let from = state_file(storage, name);
    if !from.exists() {
        return Ok(None);
    }
    let to = state_file(storage, &format!("{name}.bad-{stamp}"));
    std::fs::rename(&from, &to).map_err(|e| Error::io(&from, "move aside", e))?;
    Ok(Some(to))
}

/// The apply reports' directory, `<storage>/.gemctl/reports/`.
pub fn reports_dir(storage: &Path) -> PathBuf {
    state_file(storage, "reports")
}

/// Every apply report under the storage root that parses, in no particular order.
/// A report that cannot be read is left out rather than failing the listing of the
/// others.
pub fn read_reports<T: serde::de::DeserializeOwned>(storage: &Path) -> Result<Vec<T>, Error> {
    let dir = reports_dir(storage);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "read", e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect())
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_generation_directory_is_deleted_whole_and_what_a_killed_delete_left_goes_too() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path();
        let made = create_generation_dir(storage, 3).unwrap();
        std::fs::create_dir_all(made.join("pgdata/base")).unwrap();
        // A delete killed after the rename left this aside.
        std::fs::create_dir_all(storage.join(".2.removed/pgdata")).unwrap();
        remove_generation_dir(storage, 3).unwrap();
        let left: Vec<_> = std::fs::read_dir(storage).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
        remove_generation_dir(storage, 3).unwrap();
    }

    use super::*;

    #[test]
    fn markers_are_parsed_strictly_and_old_ones_still_read_as_ready() {
        let ready = |c| Marker::Ready { copied_from: c };
        assert_eq!(
            parse_marker(r#"{"state":"ready","copied_from":3}"#),
            ready(Some(3))
        );
        assert_eq!(parse_marker(r#"{"state":"preparing"}"#), Marker::Preparing);
        assert_eq!(parse_marker(r#"{"copied_from": 2}"#), ready(Some(2)));
        assert_eq!(parse_marker(r#"{"copied_from": null}"#), ready(None));
        for bad in [
            "{}",
            r#"{"copied_fr"#,
            r#"{"state":"missing"}"#,
            r#"{"state":"ready","extra":1}"#,
            r#"{"copied_from": "x"}"#,
            "[]",
        ] {
            assert!(parse_marker(bad).unknown(), "{bad} must not be trusted");
        }
    }

    #[test]
    fn every_damaged_state_file_is_listed_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        std::fs::create_dir_all(root.join("1")).unwrap();
        std::fs::create_dir_all(root.join("2")).unwrap();
        mark_ready(&root.join("2"), None).unwrap();
        std::fs::write(root.join("2").join(READY_MARKER), "").unwrap();
        std::fs::write(root.join(STATE_DIR).join(PIN_FILE), "{bad").unwrap();
        std::fs::write(root.join(STATE_DIR).join(LIVE_FILE), "two\n").unwrap();
        std::fs::write(root.join(STATE_DIR).join(SERVED_FILE), "").unwrap();
        std::fs::write(root.join(STATE_DIR).join(HISTORY_FILE), "{\"failed\": [").unwrap();
        let s = read_storage(root).unwrap();
        assert_eq!(s.generations[0].marker, Marker::Missing);
        assert!(s.generations[1].marker.unknown());
        let files: Vec<&str> = s.damage.iter().map(|d| d.file.as_str()).collect();
        for name in [LIVE_FILE, PIN_FILE, SERVED_FILE] {
            assert!(files.iter().any(|f| f.ends_with(name)), "{name}: {files:?}");
        }
        assert!(s.pin.is_none() && s.live.is_none() && s.served.is_none());
        let (_, damage) = read_history(root);
        let damage = damage.expect("corrupt history is damage");
        assert!(damage.file.ends_with(HISTORY_FILE), "{damage:?}");
        assert!(damage.fix.contains("--reset-history"), "{damage:?}");
    }

    #[test]
    fn a_new_generation_directory_exists_only_with_its_preparing_marker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".4.new")).unwrap();
        let made = create_generation_dir(dir.path(), 4).unwrap();
        assert_eq!(read_marker(&made), Marker::Preparing);
        assert!(!dir.path().join(".4.new").exists());
        let s = read_storage(dir.path()).unwrap();
        assert_eq!(
            s.generations.len(),
            1,
            "the temporary name is not a generation"
        );
    }
}
