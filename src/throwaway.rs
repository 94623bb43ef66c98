//! Throwaway copies of live data, beside the live generation and never part of
//! it: a **preview** of the spec's generation for testers (`gemctl preview`), a
//! **check** of a release before it is deployed (`gemctl apply --check`), and a
//! **drill** that proves a backup restores (`gemctl backups --drill`).
//!
//! A preview or a check is made from a base backup of the live database taken
//! while it serves (the streamed upgrade's: PostgreSQL's low-level backup API,
//! the files copied on the host, a slot for the WAL), started as its standby
//! until it has replayed past the end of the backup (so it holds every write
//! acknowledged before the copy began), then promoted; its services and app run
//! on that copy, health-checked as a release would be. A drill loads
//! a backup into a fresh database instead.
//!
//! Each kind has its own containers (`<project>-<kind>-db`, `-app`, `-<service>`,
//! `-copy`), labelled `io.gemctl.role=throwaway` and `io.gemctl.throwaway=<kind>`,
//! and its own storage (`<storage>/<kind>/`): the planner recognises them and
//! leaves them alone (an apply that builds a new generation discards a preview
//! first: testers' writes are not production's). What a killed gemctl left of
//! one is removed before the next is made, or by `--discard`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::copy::{self, DbCredentials};
use crate::desired::{self, ContainerConfig, Role};
use crate::engine::{CreateContainer, Engine, PortBinding};
use crate::error::Error;
use crate::health::{self, CheckOutcome, HealthOutcome};
use crate::labels;
use crate::observed::ContainerState;
use crate::spec::Spec;
use crate::state;

/// How long a throwaway database may take to accept queries.
const DB_READY: Duration = Duration::from_secs(180);
/// Lines of each container's logs kept when a throwaway copy fails its checks.
const LOG_LINES: usize = 100;
/// The record in a throwaway copy's directory.
const RECORD: &str = "record.json";

/// Which throwaway copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `gemctl preview`: kept for testers until discarded or promoted.
    Preview,
    /// `gemctl apply --check`: discarded once checked.
    Check,
    /// `gemctl backups --drill`: a backup restored, checked and discarded.
    Drill,
}

impl Kind {
    /// Its name in containers, labels and storage.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Preview => "preview",
            Kind::Check => "check",
            Kind::Drill => "drill",
        }
    }

    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Preview, Kind::Check, Kind::Drill];
}

/// A throwaway copy of one kind being made, run or discarded by this process: an
/// OS file lock on `<storage>/.gemctl/throwaway-<kind>.lock`, held as long as this
/// lives (the kernel lets go of it when the process ends, however it ends). Two
/// copies of one kind share their containers' names and slot, so a second is
/// refused while the first runs, naming it; an apply leaves a check that runs
/// alone and waits for a preview being made (see `plan::discard_throwaways`).
/// Unlike the project's lock, it never keeps a deploy or a fall back waiting.
pub struct InUse {
    _file: std::fs::File,
}

fn in_use_path(storage: &Path, kind: Kind) -> PathBuf {
    storage
        .join(crate::observed::STATE_DIR)
        .join(format!("throwaway-{}.lock", kind.name()))
}

/// Takes `kind`'s in-use lock for `command`, or fails at once naming who has it.
pub fn hold(spec: &Spec, kind: Kind, command: &str) -> Result<InUse, Error> {
    use std::fs::TryLockError;
    use std::io::{Read, Seek, Write};
    let path = in_use_path(&spec.storage, kind);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))?;
    // A lock just let go of can look held for a moment (a child forked by another
    // thread shares the file until it has exec'd): tried a few times.
    let mut retries = 4;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if retries > 0 => {
                retries -= 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let who = serde_json::from_str::<crate::lock::Holder>(&text)
                    .map_or_else(|_| "another gemctl".to_string(), |h| h.to_string());
                return Err(Error::Usage(format!(
                    "the {} of project {} is in use by {who}: wait for it to finish (its \
                     containers and data are its own until then)",
                    kind.name(),
                    spec.project
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
        }
    }
    let me = serde_json::to_string(&crate::lock::Holder::me(command)).expect("serialisable");
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(me.as_bytes()))
        .map_err(|e| Error::io(&path, "write", e))?;
    Ok(InUse { _file: file })
}

/// Whether a gemctl holds `kind`'s in-use lock now (looked at without taking it).
pub fn in_use(storage: &Path, kind: Kind) -> bool {
    holder_of(storage, kind).is_some()
}

/// Who holds `kind`'s in-use lock now, as its file says (`status`).
pub fn in_use_by(storage: &Path, kind: Kind) -> Option<crate::lock::Holder> {
    holder_of(storage, kind)?
}

/// `Some` while the in-use lock of `kind` is held, with its holder when readable.
fn holder_of(storage: &Path, kind: Kind) -> Option<Option<crate::lock::Holder>> {
    let file = std::fs::File::open(in_use_path(storage, kind)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut &file, &mut text);
            Some(serde_json::from_str(&text).ok())
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// `<storage>/<kind>`.
pub fn dir(spec: &Spec, kind: Kind) -> PathBuf {
    spec.storage.join(kind.name())
}

/// `<project>-<kind>-<part>`.
pub fn container(spec: &Spec, kind: Kind, part: &str) -> String {
    format!("{}-{}-{part}", spec.project, kind.name())
}

/// The kind of throwaway copy a container's name says it belongs to.
pub fn kind_by_name(spec: &Spec, name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| {
        name.strip_prefix(&spec.project)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_prefix(k.name()))
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|part| !part.is_empty())
    })
}

fn labels_of(spec: &Spec, kind: Kind) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), spec.project.clone()),
        (labels::ROLE.to_string(), labels::ROLE_THROWAWAY.to_string()),
        (labels::THROWAWAY.to_string(), kind.name().to_string()),
    ])
}

/// What a throwaway copy is, in `<storage>/<kind>/record.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Preview or check.
    pub kind: Kind,
    /// The spec's generation it previews.
    pub generation: u64,
    /// The live generation its data was copied from.
    pub from: u64,
    /// The live database's WAL position when the copy began: every write
    /// acknowledged before it is in the copy.
    pub from_lsn: String,
    /// When the copy began (RFC 3339 UTC).
    pub copied_at: String,
    /// How long the copy took, ms.
    pub copy_ms: u64,
    /// When its app and services passed (or failed) their checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
    /// From the copy's start to that, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    /// Whether everything passed its checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Where testers reach its app (`preview.ports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

impl Record {
    /// `generation 2 on 127.0.0.1:19080:8080, copied from generation 1 at 0/1A256F0
    /// (2026-12-06T00:45:26Z)`.
    pub fn describe(&self) -> String {
        format!(
            "generation {} on {}, copied from generation {} at {} ({})",
            self.generation,
            if self.ports.is_empty() {
                "-".to_string()
            } else {
                self.ports.join(", ")
            },
            self.from,
            self.from_lsn,
            self.copied_at
        )
    }
}

/// The record of a throwaway copy on this host, if it has one.
pub fn read_record(spec: &Spec, kind: Kind) -> Option<Record> {
    let text = std::fs::read_to_string(dir(spec, kind).join(RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(spec: &Spec, record: &Record) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(record).expect("a record serialises");
    state::write_atomic(&dir(spec, record.kind).join(RECORD), &text)
}

/// Whether anything of a throwaway copy of `kind` is on the host: its containers
/// (`names`, as observed) or its directory.
pub fn present(spec: &Spec, kind: Kind, names: &[String]) -> bool {
    dir(spec, kind).exists() || names.iter().any(|n| kind_by_name(spec, n) == Some(kind))
}

/// Removes every container and the directory of a throwaway copy of `kind`;
/// what was removed. Nothing else is touched: the containers are found by their
/// labels and names both.
pub async fn discard<E: Engine>(engine: &E, spec: &Spec, kind: Kind) -> Result<Vec<String>, Error> {
    let mut removed = Vec::new();
    for c in engine.list_containers().await? {
        let labelled = c.labels.get(labels::PROJECT) == Some(&spec.project)
            && c.labels.get(labels::THROWAWAY).map(String::as_str) == Some(kind.name());
        if labelled && kind_by_name(spec, &c.name) == Some(kind) {
            engine.remove_container(&c.name).await?;
            removed.push(c.name);
        }
    }
    let d = dir(spec, kind);
    if d.exists() {
        // Renamed aside first: a run killed while deleting leaves no half
        // directory under the kind's name, only one that the next discard takes.
        let aside = spec.storage.join(format!(".{}.removed", kind.name()));
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, "delete", e))?;
        }
        std::fs::rename(&d, &aside).map_err(|e| Error::io(&d, "move aside", e))?;
        std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, "delete", e))?;
        removed.push(d.display().to_string());
    }
    let aside = spec.storage.join(format!(".{}.removed", kind.name()));
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, "delete", e))?;
    }
    if kind != Kind::Drill {
        drop_stale_slot(engine, spec).await;
    }
    Ok(removed)
}

/// The slot a copy killed before its promotion left in the live database (it
/// would hold that database's WAL): dropped when no one streams through it. Best
/// effort: the next streamed upgrade or start of that database drops it too.
async fn drop_stale_slot<E: Engine>(engine: &E, spec: &Spec) {
    let Ok(Some(live)) = state::read_storage(&spec.storage).map(|s| s.live) else {
        return;
    };
    let Ok(env) = crate::execute::db_env(spec) else {
        return;
    };
    let db = desired::container_name(spec, Role::Db, state::db_generation(&spec.storage, live));
    let sql = format!(
        "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots \
         where slot_name = '{}' and not active",
        crate::stream::slot_name(spec.generation.0)
    );
    let _ = crate::stream::psql(engine, &db, &DbCredentials::from_env(&env), &[&sql]).await;
}

/// The live generation's database, running: the copy's source.
async fn live_db<E: Engine>(engine: &E, spec: &Spec) -> Result<(u64, String), Error> {
    let storage = state::read_storage(&spec.storage)?;
    let Some(live) = storage.live else {
        return Err(Error::Usage(format!(
            "project {} has no live generation on this host to copy: `gemctl apply` first",
            spec.project
        )));
    };
    let db = desired::container_name(spec, Role::Db, state::db_generation(&spec.storage, live));
    let up = engine
        .list_containers()
        .await?
        .into_iter()
        .any(|c| c.name == db && c.state == ContainerState::Running);
    if !up {
        return Err(Error::Usage(format!(
            "{db}, the live generation's database, is not running: `gemctl apply` repairs it"
        )));
    }
    Ok((live, db))
}

/// Copies the live database into a new throwaway copy of `kind` (what an earlier
/// one left is discarded first) while the live generation serves: only reads it
/// (a replication line in its `pg_hba.conf` if it lacks one, as a streamed
/// upgrade adds). The part that needs the project's lock.
pub async fn copy_live<E: Engine>(
    engine: &E,
    spec: &Spec,
    kind: Kind,
    progress: &mut dyn FnMut(String),
) -> Result<Record, Error> {
    let (live, db) = live_db(engine, spec).await?;
    for gone in discard(engine, spec, kind).await? {
        progress(format!("removed {gone} (an earlier {})", kind.name()));
    }
    let data = dir(spec, kind).join("pgdata");
    std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, "create", e))?;
    let creds = DbCredentials::from_env(&crate::execute::db_env(spec)?);
    crate::stream::allow_replication(engine, &db, &creds).await?;
    let from_lsn = crate::stream::psql(engine, &db, &creds, &["select pg_current_wal_lsn()"])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let copied_at = state::now_rfc3339();
    progress(format!(
        "copying {db} (generation {live}, at {from_lsn}) while it serves"
    ));
    let started = Instant::now();
    let db_gen = state::db_generation(&spec.storage, live);
    crate::stream::base_backup_into(engine, spec, &creds, db_gen, spec.generation.0, &data).await?;
    let record = Record {
        kind,
        generation: spec.generation.0,
        from: live,
        from_lsn,
        copied_at,
        copy_ms: started.elapsed().as_millis() as u64,
        ready_at: None,
        ready_ms: None,
        healthy: None,
        ports: match kind {
            Kind::Preview => preview_ports(spec),
            _ => Vec::new(),
        },
    };
    write_record(spec, &record)?;
    Ok(record)
}

fn preview_ports(spec: &Spec) -> Vec<String> {
    spec.preview
        .as_ref()
        .map(|p| p.ports.iter().map(|p| p.raw.clone()).collect())
        .unwrap_or_default()
}

/// A throwaway copy's app and services as they ran.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// Its record, with the checks' verdict.
    pub record: Record,
    /// Every check: the services' (each replica named), then the app's.
    pub health: HealthOutcome,
    /// When a check failed: each container's last log lines.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, String>,
}

/// Starts the copied database as a standby of the live one until it accepts
/// queries (it has replayed past the end of its base backup, so it holds every
/// write acknowledged before the copy began), then promotes it and drops its slot
/// in the live database: from then on the copy needs nothing of the live
/// generation. Run under the project's lock, like the copy: a deploy meanwhile
/// would take the same slot name and may stop the live database before the copy
/// has caught up.
pub async fn detach<E: Engine>(
    engine: &E,
    spec: &Spec,
    record: &Record,
    progress: &mut dyn FnMut(String),
) -> Result<(), Error> {
    let (kind, n) = (record.kind, record.generation);
    let db_name = container(spec, kind, "db");
    let mut db = desired::db(spec, n);
    db.name = db_name.clone();
    db.data_mount = Some((dir(spec, kind).join("pgdata"), spec.db.data_dir.clone()));
    create(engine, spec, kind, &db, Vec::new()).await?;
    wait_db(engine, spec, &db_name, progress).await?;
    let creds = DbCredentials::from_env(&crate::execute::db_env(spec)?);
    crate::stream::promote(engine, spec, &db_name, &creds).await?;
    drop_preview_slot(engine, spec, &creds, record.from, n).await
}

/// Starts the spec's services and app on the detached copy ([`detach`]) (the
/// services in their order, each checked; the app's checks last), none of them
/// touching the live generation. No lock is needed.
pub async fn start<E: Engine>(
    engine: &E,
    spec: &Spec,
    mut record: Record,
    started: Instant,
    progress: &mut dyn FnMut(String),
) -> Result<Started, Error> {
    let kind = record.kind;
    let n = record.generation;
    let db_name = container(spec, kind, "db");
    let mut outcome = HealthOutcome {
        healthy: true,
        checks: Vec::new(),
    };
    let mut by_service: Vec<(String, Vec<String>)> = Vec::new();
    for mut svc in desired::services_on(spec, n, n) {
        let of = svc.service.clone().expect("a service's config");
        svc.name = container(spec, kind, &svc.name.replacen(&format!("-{n}"), "", 1));
        let var = &spec.services[&of.name].db_host_var;
        svc.env.insert(var.clone(), db_name.clone());
        create(engine, spec, kind, &svc, Vec::new()).await?;
        match by_service.last_mut() {
            Some((s, names)) if *s == of.name => names.push(svc.name.clone()),
            _ => by_service.push((of.name.clone(), vec![svc.name.clone()])),
        }
    }
    for (service, replicas) in &by_service {
        let one = crate::execute::check_replicas(engine, spec, service, replicas, progress).await?;
        outcome.checks.extend(one.checks);
    }

    let app_name = container(spec, kind, "app");
    let mut app = desired::app(spec, n);
    app.name = app_name.clone();
    app.env
        .insert(spec.app.db_host_var.clone(), db_name.clone());
    let mut bindings = crate::execute::probe_ports(spec);
    if kind == Kind::Preview
        && let Some(preview) = &spec.preview
    {
        bindings.extend(preview.ports.iter().map(|p| PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            container_port: p.container_port,
            proto: p.proto.clone(),
        }));
    }
    app.ports = Vec::new();
    create(engine, spec, kind, &app, bindings).await?;
    let app_health = app_healthy(engine, spec, &app_name, progress).await?;
    outcome
        .checks
        .extend(app_health.checks.into_iter().map(|mut c| {
            c.description = format!("{app_name}: {}", c.description);
            c
        }));
    outcome.healthy = outcome.checks.iter().all(|c| c.passed);

    let mut logs = BTreeMap::new();
    if !outcome.healthy {
        for c in engine.list_containers().await? {
            if kind_by_name(spec, &c.name) == Some(kind) {
                let text = engine
                    .logs(&c.name, LOG_LINES)
                    .await
                    .unwrap_or_else(|e| e.to_string());
                logs.insert(c.name, text);
            }
        }
    }
    record.ready_at = Some(state::now_rfc3339());
    record.ready_ms = Some(started.elapsed().as_millis() as u64);
    record.healthy = Some(outcome.healthy);
    write_record(spec, &record)?;
    Ok(Started {
        record,
        health: outcome,
        logs,
    })
}

/// Drops the slot the copy streamed through from the live database, once the
/// promoted copy's WAL receiver has let go of it.
async fn drop_preview_slot<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    live: u64,
    slot_of: u64,
) -> Result<(), Error> {
    let db = state::db_generation(&spec.storage, live);
    let started = Instant::now();
    loop {
        match crate::stream::drop_slot(engine, spec, creds, db, slot_of).await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > Duration::from_secs(30) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Creates and starts one of a throwaway copy's containers from `config`.
async fn create<E: Engine>(
    engine: &E,
    spec: &Spec,
    kind: Kind,
    config: &ContainerConfig,
    ports: Vec<PortBinding>,
) -> Result<(), Error> {
    let mut all = config.run.labels.clone();
    all.extend(labels_of(spec, kind));
    // Only a preview stays up for testers; a check or a drill is checked and
    // discarded, so Docker need not bring it back.
    let request = crate::execute::request(spec, config, all, ports, kind == Kind::Preview)?;
    engine
        .create_container(&CreateContainer {
            restart_policy: None,
            ..request
        })
        .await?;
    engine.start_container(&config.name).await?;
    Ok(())
}

/// Waits until a throwaway database accepts queries; its logs when it cannot.
async fn wait_db<E: Engine>(
    engine: &E,
    spec: &Spec,
    container: &str,
    progress: &mut dyn FnMut(String),
) -> Result<(), Error> {
    let creds = DbCredentials::from_env(&crate::execute::db_env(spec)?);
    let cmd = crate::execute::ready_command(&creds);
    let started = Instant::now();
    while started.elapsed() < DB_READY {
        if let Ok(out) = engine.exec(container, &cmd).await
            && out.exit_code == 0
            && out.stdout.trim() == "1"
        {
            return Ok(());
        }
        let running = engine
            .list_containers()
            .await?
            .into_iter()
            .any(|c| c.name == container && c.state == ContainerState::Running);
        if !running {
            break;
        }
        progress(format!(
            "waiting for {container} to accept queries ({}s)",
            started.elapsed().as_secs()
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = engine.logs(container, 30).await.unwrap_or_default();
    Err(Error::Apply(format!(
        "{container} does not accept queries. Its last log lines:\n{}",
        logs.trim_end()
    )))
}

/// The app's checks against its health ports as published on 127.0.0.1.
async fn app_healthy<E: Engine>(
    engine: &E,
    spec: &Spec,
    container: &str,
    progress: &mut dyn FnMut(String),
) -> Result<HealthOutcome, Error> {
    let mut ports = BTreeMap::new();
    for port in spec.app.health.iter().filter_map(|c| c.port()) {
        if let Some((_, host_port)) = engine.published_port(container, port).await? {
            ports.insert(port, host_port);
        }
    }
    let target = health::Target {
        container,
        host: "127.0.0.1".into(),
        ports,
    };
    let mut on_probe = |p: &health::ProbeEvent| progress(p.line(container));
    Ok(health::wait_healthy(engine, &target, &spec.app.health, &mut on_probe).await)
}

/// What a restore drill found, written next to the backup as
/// `<backup>.drill.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    /// The backup's file name.
    pub backup: String,
    /// When the drill ran (RFC 3339 UTC).
    pub at: String,
    /// Whether the backup restored and passed every check.
    pub passed: bool,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The databases the backup's manifest lists.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Rows per table, per database (`schema.table` → rows).
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, u64>>,
    /// Rows `backup.drill.check` returned, when the spec has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_rows: Option<u64>,
    /// How long the drill took, ms.
    pub duration_ms: u64,
}

/// The drill record of a backup file.
pub fn drill_path(backup: &Path) -> PathBuf {
    let mut name = backup.file_name().unwrap_or_default().to_os_string();
    name.push(".drill.json");
    backup.with_file_name(name)
}

/// The last drill of a backup, if it had one.
pub fn last_drill(backup: &Path) -> Option<Drill> {
    serde_json::from_str(&std::fs::read_to_string(drill_path(backup)).ok()?).ok()
}

/// Rows per table of every database, counted exactly.
const COUNT_TABLES: &str = "\
select format('select %L || '' '' || count(*) from %I.%I', \
  table_schema || '.' || table_name, table_schema, table_name) \
from information_schema.tables \
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') \
order by table_schema, table_name
\\gexec
";

/// Restores `backup` (checksum verified first) into a throwaway database, checks
/// it — every database of its manifest is there, rows per table are counted, the
/// spec's `backup.drill.check` query returns rows —, records the result next to
/// the backup and discards the copy. The live generation is not touched and no
/// lock is taken. The drill's verdict is in the record; an `Err` is a drill that
/// could not run at all (the engine, the files).
pub async fn drill<E: Engine>(
    engine: &E,
    spec: &Spec,
    backup: &Path,
    progress: &mut dyn FnMut(String),
) -> Result<Drill, Error> {
    let started = Instant::now();
    let mut result = Drill {
        backup: backup
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        at: state::now_rfc3339(),
        passed: false,
        error: None,
        databases: Vec::new(),
        tables: BTreeMap::new(),
        check_rows: None,
        duration_ms: 0,
    };
    for gone in discard(engine, spec, Kind::Drill).await? {
        progress(format!("removed {gone} (an earlier drill)"));
    }
    let run = drill_steps(engine, spec, backup, &mut result, progress).await;
    let discarded = discard(engine, spec, Kind::Drill).await;
    if let Err(e) = run {
        result.error = Some(e.to_string());
    }
    result.passed = result.error.is_none();
    result.duration_ms = started.elapsed().as_millis() as u64;
    let text = serde_json::to_vec_pretty(&result).expect("a drill serialises");
    state::write_atomic(&drill_path(backup), &text)?;
    discarded?;
    Ok(result)
}

async fn drill_steps<E: Engine>(
    engine: &E,
    spec: &Spec,
    backup: &Path,
    result: &mut Drill,
    progress: &mut dyn FnMut(String),
) -> Result<(), Error> {
    progress(format!("verifying the checksum of {}", backup.display()));
    crate::backup::verify(backup)?;
    let data = dir(spec, Kind::Drill).join("pgdata");
    std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, "create", e))?;
    let db_name = container(spec, Kind::Drill, "db");
    let mut db = desired::db(spec, 0);
    db.name = db_name.clone();
    db.data_mount = Some((data, spec.db.data_dir.clone()));
    progress(format!("starting {db_name} on an empty data directory"));
    create(engine, spec, Kind::Drill, &db, Vec::new()).await?;
    wait_db(engine, spec, &db_name, progress).await?;

    let env = crate::execute::db_env(spec)?;
    let mut job = crate::backup::restore_job(
        spec,
        &env,
        &db_name,
        container(spec, Kind::Drill, "copy"),
        0,
        backup,
    )?;
    job.script = format!(
        "tar -xOf /restore/backup.tar databases.tsv | cut -f2 | sed 's/^/manifest database /'\n{}",
        job.script
    );
    progress(format!("restoring {} into {db_name}", backup.display()));
    let output =
        copy::run_one_shot_labelled(engine, spec, job, labels_of(spec, Kind::Drill)).await?;
    result.databases = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("manifest database "))
        .map(str::to_string)
        .collect();

    let creds = DbCredentials::from_env(&env);
    let present = crate::stream::psql(
        engine,
        &db_name,
        &creds,
        &["select datname from pg_database where not datistemplate order by 1"],
    )
    .await?;
    let missing: Vec<&String> = result
        .databases
        .iter()
        .filter(|d| !present.contains(d))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Apply(format!(
            "the restored copy lacks database(s) {missing:?} that the backup's manifest lists"
        )));
    }
    for database in result.databases.clone() {
        let lines = copy::psql(engine, &db_name, &creds, &database, COUNT_TABLES).await?;
        let tables = lines
            .iter()
            .filter_map(|l| {
                let (t, n) = l.trim().rsplit_once(' ')?;
                Some((t.to_string(), n.parse().ok()?))
            })
            .collect();
        result.tables.insert(database, tables);
    }
    if let Some(check) = spec
        .backup
        .as_ref()
        .and_then(|b| b.drill.as_ref())
        .and_then(|d| d.check.as_ref())
    {
        let rows = crate::stream::psql(engine, &db_name, &creds, &[check.as_str()])
            .await
            .map_err(|e| Error::Apply(format!("backup.drill.check failed: {e}")))?;
        let rows = rows.iter().filter(|l| !l.trim().is_empty()).count() as u64;
        result.check_rows = Some(rows);
        if rows == 0 {
            return Err(Error::Apply(
                "backup.drill.check returned no row on the restored copy".into(),
            ));
        }
    }
    Ok(())
}

/// A failed check's outcome, for a copy that could not even start.
pub fn failed_outcome(what: &str, error: &Error) -> HealthOutcome {
    HealthOutcome {
        healthy: false,
        checks: vec![CheckOutcome {
            description: what.to_string(),
            passed: false,
            attempts: 1,
            elapsed_ms: 0,
            last_output: error.to_string(),
        }],
    }
}
