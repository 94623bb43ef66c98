//! The streamed copy's work on the engine: what each step of the streamed upgrade
//! (see `plan::stream`) does to the databases, through `docker exec` in the db
//! containers, one-shot containers of the db image on the private network, and
//! (the base backup's session) a connection from this host.
//!
//! Secrets: the password reaches the base backup's session through the client
//! library only (see `pg_direct`), and the standby reads it from a password file
//! (0600) in its own data directory, removed at the promotion; it is never in a
//! command line, a script, a label, a plan or a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::copy::DbCredentials;
use crate::desired::{self, Role};
use crate::engine::{CreateContainer, Engine};
use crate::error::Error;
use crate::labels;
use crate::spec::Spec;

/// The password file the standby reads, in its data directory.
pub const PASSFILE: &str = "gemctl-standby.pgpass";
/// Where the control-data one-shot container mounts the old data directory.
const PRIMARY_MOUNT: &str = "/gemctl-primary";
/// The standby is close enough for the freeze to start.
pub const CATCH_UP_BYTES: u64 = 16 * 1024 * 1024;

/// The base backup's replication slot on db-n: `gemctl_<N>`.
pub fn slot_name(to: u64) -> String {
    format!("gemctl_{to}")
}

/// A WAL position (`16/B374D848`) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A libpq connection-string value, quoted.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

/// Runs SQL statements (each its own `-c`, so `ALTER SYSTEM` runs outside a
/// transaction block) with psql inside a db container; the output's lines.
pub async fn psql<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
    statements: &[&str],
) -> Result<Vec<String>, Error> {
    let mut cmd: Vec<String> = [
        "psql",
        "-X",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        &creds.user,
        "-d",
        &creds.database,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in statements {
        cmd.push("-c".into());
        cmd.push(s.to_string());
    }
    let out = engine.exec(container, &cmd).await?;
    if out.exit_code != 0 {
        return Err(Error::Apply(format!(
            "query in {container} failed: {}",
            format!("{}{}", out.stderr, out.stdout).trim()
        )));
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The one value a query returns.
async fn value<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
    sql: &str,
) -> Result<String, Error> {
    let lines = psql(engine, container, creds, &[sql]).await?;
    lines
        .into_iter()
        .last()
        .ok_or_else(|| Error::Apply(format!("query in {container} returned nothing: {sql}")))
}

/// Drops the replication slots gemctl made that nothing uses, in a primary: left
/// by a base backup that was interrupted or failed, they would hold its WAL
/// forever. A standby has none to drop.
pub async fn drop_stale_slots<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
) -> Result<(), Error> {
    psql(
        engine,
        container,
        creds,
        &[
            r"select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots
            where slot_name like 'gemctl\_%' and not active and not pg_is_in_recovery()",
        ],
    )
    .await?;
    Ok(())
}

/// Lets `container` accept replication connections from its private network: a
/// `host replication <user> samenet <method>` line in its `pg_hba.conf` (the
/// method of its `host all all all` line, else scram-sha-256) and a reload,
/// unless a line already allows it; then drops stale slots.
pub async fn allow_replication<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
) -> Result<bool, Error> {
    let script = r#"set -eu
u=$1; d=$2
hba=$(psql -X -tA -U "$u" -d "$d" -c 'show hba_file')
if awk -v u="$u" '$1=="host" && $2=="replication" && ($3==u || $3=="\""u"\"" || $3=="all") && ($4=="all" || $4=="samenet") {f=1} END {exit !f}' "$hba"; then
  echo present
  exit 0
fi
method=$(awk '$1=="host" && $2=="all" && $3=="all" && $4=="all" {m=$5} END {print m}' "$hba")
printf '\n# added by gemctl: a new generation follows this database by streaming replication\nhost replication %s samenet %s\n' "$u" "${method:-scram-sha-256}" >>"$hba"
psql -X -tA -v ON_ERROR_STOP=1 -U "$u" -d "$d" -c 'select pg_reload_conf()' >/dev/null
echo added
"#;
    let cmd: Vec<String> = [
        "bash",
        "-c",
        script,
        "allow-replication",
        &creds.user,
        &creds.database,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = engine.exec(container, &cmd).await?;
    if out.exit_code != 0 {
        return Err(Error::Apply(format!(
            "cannot allow replication in {container}: {}",
            format!("{}{}", out.stderr, out.stdout).trim()
        )));
    }
    drop_stale_slots(engine, container, creds).await?;
    Ok(out.stdout.contains("added"))
}

/// The session in db-n that holds the base backup, run with `docker exec` (args:
/// user, database, slot, label, a scratch directory in the container's own `/tmp`,
/// the longest wait in seconds). One psql session, as the low-level API needs:
/// stale `gemctl-base-backup` sessions (a killed run's) ended; the slot a failed run
/// left dropped; a free WAL sender required (the standby needs one to stream);
/// the physical slot made with `immediately_reserve` (it keeps the WAL from before
/// the backup's checkpoint until the standby has caught up); `pg_backup_start(label,
/// fast => true)` (`pg_start_backup(label, true, false)` before PostgreSQL 15);
/// then it says `started` through the fifo `started` and waits, in that session,
/// for a line on the fifo `copied` (gemctl's, once it copied the files on the
/// host); then `pg_backup_stop(false)` (nothing is archived: the standby streams),
/// printing its label file in hex. A session that ends before `started` says
/// `failed` instead. Nothing secret is in it.
const BACKUP_SESSION_SCRIPT: &str = r#"set -eu
u=$1; d=$2; slot=$3; label=$4; export GEMCTL_DIR=$5; wait_s=$6
mkdir -p "$GEMCTL_DIR"
mkfifo "$GEMCTL_DIR/started" "$GEMCTL_DIR/copied"
trap '[ -e "$GEMCTL_DIR/said" ] || timeout 10 sh -c "echo failed > \"\$GEMCTL_DIR/started\"" || true; rm -rf "$GEMCTL_DIR"' EXIT
export GEMCTL_WAIT=$wait_s
PGAPPNAME=gemctl-base-backup psql -X -qtA -v ON_ERROR_STOP=1 -U "$u" -d "$d" \
  -v slot="$slot" -v label="$label" <<'SQL'
select count(pg_terminate_backend(pid)) from pg_stat_activity
  where application_name = 'gemctl-base-backup' and pid <> pg_backend_pid();
select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots
  where slot_name = :'slot' and not active;
do 'begin
  if current_setting(''max_wal_senders'')::int <= (select count(*) from pg_stat_replication) then
    raise exception ''no WAL sender is free for the standby (max_wal_senders = %)'',
      current_setting(''max_wal_senders'');
  end if;
end';
select count(pg_create_physical_replication_slot(:'slot', true));
select current_setting('server_version_num')::int >= 150000 as v15 \gset
select extract(epoch from clock_timestamp()) as t0 \gset
\if :v15
select count(pg_backup_start(:'label', true));
\else
select count(pg_start_backup(:'label', true, false));
\endif
select 'gemctl-start-ms ' || round((extract(epoch from clock_timestamp()) - :t0) * 1000);
\! touch "$GEMCTL_DIR/said"; timeout "$GEMCTL_WAIT" sh -c 'echo started > "$GEMCTL_DIR/started"'
\set copied `timeout "$GEMCTL_WAIT" head -n 1 "$GEMCTL_DIR/copied" || echo "no answer"`
\if :v15
select 'gemctl-label ' || encode(convert_to(labelfile, 'UTF8'), 'hex') || ' '
  || coalesce(length(spcmapfile), 0) from pg_backup_stop(false);
\else
select 'gemctl-label ' || encode(convert_to(labelfile, 'UTF8'), 'hex') || ' '
  || coalesce(length(spcmapfile), 0) from pg_stop_backup(false, false);
\endif
select 'gemctl-copied ' || :'copied';
SQL
"#;

/// Waits (in db-n) until the backup session says it started: `started`, or
/// `failed`. Args: the scratch directory, the longest wait in seconds.
const BACKUP_STARTED_SCRIPT: &str = r#"set -eu
for _ in $(seq 1000); do [ -p "$1/started" ] && break; sleep 0.01; done
timeout "$2" head -n 1 "$1/started"
"#;

/// Tells the backup session (in db-n) how the copy went, whatever happened before:
/// a session that is gone is left alone; one still saying `started` (gemctl did
/// not hear it) is heard first; then it reads `ok` or `failed`, stops the backup
/// and ends. Args: the scratch directory, `ok` or `failed`.
const BACKUP_COPIED_SCRIPT: &str = r#"[ -p "$1/copied" ] || exit 0
if [ "$2" != ok ]; then timeout 1 cat "$1/started" >/dev/null 2>&1 || true; fi
timeout 10 sh -c 'echo "$2" > "$1/copied"' sh "$1" "$2""#;

/// The standby's `primary_conninfo` line (its password is in [`PASSFILE`]).
pub fn standby_conf_line(spec: &Spec, creds: &DbCredentials, from: u64, to: u64) -> String {
    let host = desired::container_name(spec, Role::Db, from);
    let passfile = format!("{}/{PASSFILE}", spec.db.data_dir.trim_end_matches('/'));
    let conninfo = format!(
        "host={} port=5432 user={} passfile={} application_name={}",
        conninfo_value(&host),
        conninfo_value(&creds.user),
        conninfo_value(&passfile),
        slot_name(to),
    );
    format!("primary_conninfo = '{}'\n", conninfo.replace('\'', "''"))
}

/// The standby's password file: one line for db-n (`:` and `\` escaped).
pub fn standby_passfile(spec: &Spec, creds: &DbCredentials, from: u64) -> String {
    let esc = |v: &str| v.replace('\\', r"\\").replace(':', r"\:");
    format!(
        "{}:5432:*:{}:{}\n",
        esc(&desired::container_name(spec, Role::Db, from)),
        esc(&creds.user),
        esc(creds.password.as_deref().unwrap_or_default())
    )
}

/// How long the base backup's parts took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseBackupTiming {
    /// Until db-n's backup started (its slot, the fast checkpoint of
    /// `pg_backup_start`), from gemctl's first statement.
    pub start: Duration,
    /// `pg_backup_start` alone (its checkpoint), as the session measured it.
    pub pg_backup_start: Option<Duration>,
    /// The files copied on the host.
    pub copy: Duration,
    /// `pg_backup_stop` and the standby's files written.
    pub stop: Duration,
    /// Bytes of files copied.
    pub bytes: u64,
    /// Where the backup was held: a session over TCP, or `psql` in db-n through
    /// `docker exec` where this host could not connect.
    pub held_in: String,
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The backup session's label file, from its `gemctl-label <hex> <spcmap length>`
/// line.
fn parse_label(output: &str) -> Option<(String, u64)> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("gemctl-label "))?;
    let (hex, spcmap) = line.split_once(' ')?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((String::from_utf8(bytes?).ok()?, spcmap.trim().parse().ok()?))
}

/// Makes generation `to`'s data directory (already created, empty) a base backup
/// of generation `from`'s running db, set up as its standby, with PostgreSQL's
/// low-level backup API: one session of db-n makes the slot `gemctl_<to>` and
/// holds `pg_backup_start(fast)` while gemctl copies db-n's data directory on the
/// host ([`crate::data_copy`]), then `pg_backup_stop()`, whose label file gemctl
/// writes as `backup_label`; then `standby.signal`, the password file (0600) and
/// `primary_conninfo`. db-n's data is only read.
///
/// The session is a connection from this host to db-n's address on the private
/// network ([`crate::pg_direct`]); where that cannot connect (gemctl itself in a
/// container, say), `psql` in db-n through `docker exec` holds it instead
/// ([`BACKUP_SESSION_SCRIPT`]), at the cost of three `docker exec`s (about a
/// third of a second). Which one did is in [`BaseBackupTiming::held_in`].
///
/// Not `pg_basebackup`: through a one-shot container on the private network it
/// measured at a third of `cp -a`'s throughput on the same data (one TCP stream
/// through the bridge and the tar protocol; `benches/upgrade.rs`), where a copy on
/// the host goes at the disk's speed.
///
/// No fsync: the copied control file says `in production`, and PostgreSQL's
/// startup (`StartupXLOG` in xlog.c) runs `SyncDataDirectory()` — every file of
/// the data directory — whenever the control file's state is neither `shut down`
/// nor `shut down in recovery`, before it replays anything. So the standby's first
/// start (`CreateDb` + `WaitDb`, still before the freeze, while app-n serves) makes
/// the copy durable before it streams or is ever promoted. A host crash between
/// the two leaves generation N `preparing` (never served): the next apply removes
/// its data and makes it again.
pub async fn base_backup<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    from: u64,
    to: u64,
) -> Result<BaseBackupTiming, Error> {
    base_backup_into(engine, spec, creds, from, to, &desired::data_dir(spec, to)).await
}

/// As [`base_backup`], into `target` (an empty directory) instead of generation
/// `to`'s data directory; `to` names the slot and the standby's
/// `application_name` (a preview uses the generation it previews).
pub async fn base_backup_into<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    from: u64,
    to: u64,
    target: &Path,
) -> Result<BaseBackupTiming, Error> {
    let untouched = |e: Error| Error::Apply(format!("{e}\nGeneration {from}'s data is untouched."));
    let primary = desired::container_name(spec, Role::Db, from);
    let (source, target) = (desired::data_dir(spec, from), target.to_path_buf());
    let tablespaces = crate::data_copy::tablespaces(&source);
    if !tablespaces.is_empty() {
        return Err(untouched(Error::Apply(format!(
            "generation {from}'s database has tablespaces ({}), which a streamed upgrade \
             does not copy: use `db.copy: dump`",
            tablespaces.join(", ")
        ))));
    }
    let slot = slot_name(to);
    let label = format!("gemctl generation {to}");
    let began = std::time::Instant::now();
    let copy_files = || {
        let (from_dir, to_dir) = (source.clone(), target.clone());
        async move {
            tokio::task::spawn_blocking(move || crate::data_copy::copy_data_dir(&from_dir, &to_dir))
                .await
                .map_err(|e| Error::Apply(format!("the copy of generation {from}'s files: {e}")))?
        }
    };
    let failed = |why: String| {
        untouched(Error::Apply(format!(
            "the base backup of generation {from} into generation {to} failed: {why}"
        )))
    };
    let held = match crate::pg_direct::connect(engine, spec, &primary, creds, BACKUP_APP).await {
        Ok(session) => hold_in_session(session, &slot, &label, began, copy_files)
            .await
            .map_err(|e| match e {
                Held::Failed(why) => failed(why),
                Held::Copy(e) => untouched(e),
            })?,
        Err(why) => {
            tracing::warn!("{why}: the base backup is held through docker exec instead");
            hold_through_exec(
                engine, &primary, creds, &slot, &label, to, began, copy_files,
            )
            .await
            .map_err(|e| match e {
                Held::Failed(why) => failed(why),
                Held::Copy(e) => untouched(e),
            })?
        }
    };
    let label_file = held.label_file.clone();
    let write = |name: &str, text: &str, mode: u32| -> Result<(), Error> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let path = target.join(name);
        let owner = std::fs::metadata(&target).map_err(|e| Error::io(&target, "read", e))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| Error::io(&path, "write", e))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| Error::io(&path, "write", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .and_then(|()| std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())))
            .map_err(|e| Error::io(&path, "set the owner of", e))
    };
    write("backup_label", &label_file, 0o600)?;
    write("standby.signal", "", 0o600)?;
    write(PASSFILE, &standby_passfile(spec, creds, from), 0o600)?;
    write(
        "postgresql.auto.conf",
        &standby_conf_line(spec, creds, from, to),
        0o600,
    )?;
    Ok(BaseBackupTiming {
        start: held.started,
        pg_backup_start: held.pg_backup_start,
        copy: held.copy_done - held.started,
        stop: began.elapsed() - held.copy_done,
        bytes: held.copied.bytes,
        held_in: held.held_in,
    })
}

/// The `application_name` of the session that holds a base backup: a run's stale
/// one (its gemctl was killed) is ended by the next.
const BACKUP_APP: &str = "gemctl-base-backup";

/// A base backup held, its files copied, stopped.
struct Backup {
    /// Until `pg_backup_start` returned, from the first step.
    started: Duration,
    /// `pg_backup_start` alone.
    pg_backup_start: Option<Duration>,
    /// Until the files were copied, from the first step.
    copy_done: Duration,
    copied: crate::data_copy::Copied,
    /// `pg_backup_stop`'s label file, for `backup_label`.
    label_file: String,
    /// Where the session ran.
    held_in: String,
}

/// Why a base backup was not made.
enum Held {
    /// The session in db-n failed (its words).
    Failed(String),
    /// The copy of the files failed.
    Copy(Error),
}

/// The base backup held in one session of db-n over TCP (see [`crate::pg_direct`]):
/// a stale `gemctl-base-backup` session (a killed run's) ended; the slot a failed
/// run left dropped; a free WAL sender required (the standby needs one to
/// stream); the physical slot made with `immediately_reserve` (it keeps the WAL
/// from before the backup's checkpoint until the standby has caught up);
/// `pg_backup_start(label, fast => true)` (`pg_start_backup(label, true, false)`
/// before PostgreSQL 15); the files copied; `pg_backup_stop(false)` (nothing is
/// archived: the standby streams). A copy that fails ends the session, which ends
/// the backup.
async fn hold_in_session<F, Fut>(
    session: crate::pg_direct::Session,
    slot: &str,
    label: &str,
    began: std::time::Instant,
    copy_files: F,
) -> Result<Backup, Held>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<crate::data_copy::Copied, Error>>,
{
    let client = &session.client;
    let failed = |e: tokio_postgres::Error| Held::Failed(crate::pg_direct::message(&e));
    client
        .execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = $1 and pid <> pg_backend_pid()",
            &[&BACKUP_APP],
        )
        .await
        .map_err(failed)?;
    client
        .execute(
            "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots \
             where slot_name = $1 and not active",
            &[&slot],
        )
        .await
        .map_err(failed)?;
    let row = client
        .query_one(
            "select current_setting('max_wal_senders')::int, \
             (select count(*) from pg_stat_replication)::int, \
             current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(failed)?;
    let (senders, used, version): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
    if senders <= used {
        return Err(Held::Failed(format!(
            "no WAL sender is free for the standby (max_wal_senders = {senders}, {used} in use)"
        )));
    }
    client
        .execute(
            "select count(pg_create_physical_replication_slot($1, true))",
            &[&slot],
        )
        .await
        .map_err(failed)?;
    let t0 = std::time::Instant::now();
    let start = if version >= 150000 {
        "select count(pg_backup_start($1, true))"
    } else {
        "select count(pg_start_backup($1, true, false))"
    };
    client.execute(start, &[&label]).await.map_err(failed)?;
    let pg_backup_start = t0.elapsed();
    let started = began.elapsed();
    let copied = match copy_files().await {
        Ok(copied) => copied,
        // Dropping the session ends the backup.
        Err(e) => return Err(Held::Copy(e)),
    };
    let copy_done = began.elapsed();
    let stop = if version >= 150000 {
        "select labelfile, coalesce(length(spcmapfile), 0)::bigint from pg_backup_stop(false)"
    } else {
        "select labelfile, coalesce(length(spcmapfile), 0)::bigint \
         from pg_stop_backup(false, false)"
    };
    let row = client.query_one(stop, &[]).await.map_err(failed)?;
    let (label_file, spcmap): (String, i64) = (row.get(0), row.get(1));
    if spcmap != 0 {
        return Err(Held::Failed(
            "the database has tablespaces (a tablespace map came back), which a streamed \
             upgrade does not copy: use `db.copy: dump`"
                .into(),
        ));
    }
    Ok(Backup {
        started,
        pg_backup_start: Some(pg_backup_start),
        copy_done,
        copied,
        label_file,
        held_in: format!("a session over TCP to {}", session.address),
    })
}

/// The base backup held through `docker exec` (see [`BACKUP_SESSION_SCRIPT`]),
/// where this host cannot connect to db-n.
#[allow(clippy::too_many_arguments)]
async fn hold_through_exec<E, F, Fut>(
    engine: &E,
    primary: &str,
    creds: &DbCredentials,
    slot: &str,
    label: &str,
    to: u64,
    began: std::time::Instant,
    copy_files: F,
) -> Result<Backup, Held>
where
    E: Engine,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<crate::data_copy::Copied, Error>>,
{
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let scratch = format!("/tmp/gemctl-base-backup-{to}-{nanos}");
    let wait = "3600";
    let session_cmd = cmd(&[
        "bash",
        "-c",
        BACKUP_SESSION_SCRIPT,
        "base-backup",
        &creds.user,
        &creds.database,
        slot,
        label,
        &scratch,
        wait,
    ]);
    let session = engine.exec(primary, &session_cmd);
    let copy = async {
        let copied = async {
            let said = engine
                .exec(
                    primary,
                    &cmd(&[
                        "bash",
                        "-c",
                        BACKUP_STARTED_SCRIPT,
                        "started",
                        &scratch,
                        wait,
                    ]),
                )
                .await?;
            if said.stdout.trim() != "started" {
                return Ok(None);
            }
            let started = began.elapsed();
            let copied = copy_files().await?;
            Ok::<_, Error>(Some((started, began.elapsed(), copied)))
        }
        .await;
        // Whatever happened, the session hears it, stops the backup and ends.
        let told = engine
            .exec(
                primary,
                &cmd(&[
                    "sh",
                    "-c",
                    BACKUP_COPIED_SCRIPT,
                    "copied",
                    &scratch,
                    if matches!(copied, Ok(Some(_))) {
                        "ok"
                    } else {
                        "failed"
                    },
                ]),
            )
            .await;
        let copied = copied?;
        told?;
        Ok::<_, Error>(copied)
    };
    let (session, copy) = tokio::join!(session, copy);
    let session = session.map_err(|e| Held::Failed(e.to_string()))?;
    let copy = copy.map_err(Held::Copy)?;
    let output = format!("{}{}", session.stderr, session.stdout);
    let label_file = parse_label(&session.stdout);
    let (Some((started, copy_done, copied)), 0, Some((label_file, 0)), true) = (
        copy,
        session.exit_code,
        label_file,
        session.stdout.contains("gemctl-copied ok"),
    ) else {
        return Err(Held::Failed(format!(
            "(exit {}): {}",
            session.exit_code,
            output.trim()
        )));
    };
    Ok(Backup {
        started,
        pg_backup_start: session
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("gemctl-start-ms "))
            .and_then(|ms| ms.trim().parse().ok())
            .map(Duration::from_millis),
        copy_done,
        copied,
        label_file,
        held_in: format!("a psql session in {primary} (docker exec)"),
    })
}

/// Where the standby stands against its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// The standby's WAL receiver is streaming from the primary.
    pub streaming: bool,
    /// Bytes of WAL the primary wrote that the standby has not replayed yet.
    pub bytes: u64,
}

/// How far db-`to` (a standby) is behind db-`from` (its primary).
pub async fn lag<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    from: u64,
    to: u64,
) -> Result<Lag, Error> {
    let primary = desired::container_name(spec, Role::Db, from);
    let standby = desired::container_name(spec, Role::Db, to);
    let current = value(engine, &primary, creds, "select pg_current_wal_lsn()").await?;
    let seen = value(
        engine,
        &standby,
        creds,
        "select coalesce((select status from pg_stat_wal_receiver), 'none') || ' ' || \
         coalesce(pg_last_wal_replay_lsn()::text, '0/0')",
    )
    .await?;
    let (status, replayed) = seen.split_once(' ').unwrap_or((&seen, "0/0"));
    let lsn = |t: &str, what: &str| {
        parse_lsn(t).ok_or_else(|| Error::Apply(format!("{what} is not a WAL position: {t:?}")))
    };
    Ok(Lag {
        streaming: status == "streaming",
        bytes: lsn(&current, "the primary's position")?
            .saturating_sub(lsn(replayed, "the standby's replay position")?),
    })
}

/// Drops the base backup's slot from the primary once the standby streams.
pub async fn drop_slot<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    from: u64,
    to: u64,
) -> Result<(), Error> {
    let primary = desired::container_name(spec, Role::Db, from);
    psql(
        engine,
        &primary,
        creds,
        &[&format!(
            "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots \
             where slot_name = '{}'",
            slot_name(to)
        )],
    )
    .await?;
    Ok(())
}

/// `CHECKPOINT` in a running primary. Done at the end of the catch-up, while its
/// app still serves: the shutdown checkpoint in the freeze then only writes the
/// pages dirtied in the moments since, not everything since the last one.
pub async fn checkpoint<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
) -> Result<(), Error> {
    psql(engine, container, creds, &["checkpoint"]).await?;
    Ok(())
}

/// A fast shutdown (the image's stop signal, SIGINT) with `grace` to finish before
/// Docker kills it. Its shutdown checkpoint is short: [`checkpoint`] ran just
/// before the freeze, and the app has stopped writing. A shutdown that does not
/// finish in time is not clean, which the control data then says, and the standby
/// is refused (`WaitReplay`).
pub async fn stop_primary<E: Engine>(
    engine: &E,
    container: &str,
    grace: Duration,
) -> Result<(), Error> {
    engine.stop_container(container, grace).await?;
    Ok(())
}

/// A WAL position as PostgreSQL writes it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// In the standby, one `docker exec` and one session: unless its system identifier
/// is not `system` (then at once), waits in the server (polling its replay position
/// every 2 ms, no round trip per poll) until it replayed past `lsn` or `timeout`
/// passed; then its system identifier and replay position. The caller decides.
pub async fn wait_replayed_past<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
    system: &str,
    lsn: u64,
    timeout: Duration,
) -> Result<(String, u64), Error> {
    let system: u64 = system
        .parse()
        .map_err(|_| Error::Apply(format!("not a system identifier: {system:?}")))?;
    let wait = format!(
        "do $$ declare deadline timestamptz := clock_timestamp() + interval '{ms} ms'; begin \
           if (select system_identifier::text from pg_control_system()) = '{system}' then \
             while coalesce(pg_last_wal_replay_lsn(), '0/0') <= '{lsn}'::pg_lsn \
                   and clock_timestamp() < deadline loop \
               perform pg_sleep(0.002); \
             end loop; \
           end if; \
         end $$",
        ms = timeout.as_millis(),
        lsn = format_lsn(lsn),
    );
    let line = psql(
        engine,
        container,
        creds,
        &[
            &wait,
            "select (select system_identifier from pg_control_system()) || ' ' || \
             coalesce(pg_last_wal_replay_lsn()::text, '0/0')",
        ],
    )
    .await?
    .into_iter()
    .rfind(|l| l != "DO")
    .unwrap_or_default();
    let (id, replayed) = line.split_once(' ').unwrap_or((&line, ""));
    let replayed = parse_lsn(replayed)
        .ok_or_else(|| Error::Apply(format!("{container} gave no replay position: {line:?}")))?;
    Ok((id.to_string(), replayed))
}

/// What a stopped db's control file says (`pg_controldata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state`.
    pub state: String,
    /// `Database system identifier`.
    pub system_identifier: String,
    /// `Latest checkpoint location`.
    pub checkpoint: u64,
}

/// Parses `pg_controldata`'s output (run with `LC_ALL=C`).
pub fn parse_control_data(text: &str) -> Option<ControlData> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    Some(ControlData {
        state: field("Database cluster state")?,
        system_identifier: field("Database system identifier")?,
        checkpoint: parse_lsn(&field("Latest checkpoint location")?)?,
    })
}

/// Reads a stopped db's control file straight from the host, when gemctl may: the
/// first fields of `ControlFileData` (system identifier, version, catalog, state,
/// time, latest checkpoint), laid out alike from PostgreSQL 9.6 to 17. Nothing
/// proves the layout here: the caller takes it only when its system identifier is
/// the standby's (a 64-bit match), and runs `pg_controldata` otherwise. Saves the
/// one-shot container's half second in the freeze.
pub fn read_control_file(data_dir: &Path) -> Option<ControlData> {
    let bytes = std::fs::read(data_dir.join("global").join("pg_control")).ok()?;
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if !(960..2000).contains(&u32_at(8)?) {
        return None;
    }
    let state = match u32_at(16)? {
        0 => "starting up",
        1 => "shut down",
        2 => "shut down in recovery",
        3 => "shutting down",
        4 => "in crash recovery",
        5 => "in archive recovery",
        6 => "in production",
        _ => return None,
    };
    Some(ControlData {
        state: state.into(),
        system_identifier: u64_at(0)?.to_string(),
        checkpoint: u64_at(32)?,
    })
}

/// Reads generation `from`'s control data from its stopped data directory, mounted
/// read-only in a one-shot container of the db image.
pub async fn control_data<E: Engine>(
    engine: &E,
    spec: &Spec,
    from: u64,
    to: u64,
) -> Result<ControlData, Error> {
    let name = desired::copy_container_name(spec, to);
    let labels = BTreeMap::from([
        (labels::PROJECT.to_string(), spec.project.clone()),
        (labels::ROLE.to_string(), labels::ROLE_COPY.to_string()),
        (labels::GENERATION.to_string(), to.to_string()),
    ]);
    let data: PathBuf = desired::data_dir(spec, from);
    engine.remove_container(&name).await?;
    engine
        .create_container(&CreateContainer {
            name: name.clone(),
            image: spec.db.image.to_string(),
            env: vec!["LC_ALL=C".into()],
            labels,
            network: Some(spec.network_name()),
            binds: vec![(data, format!("{PRIMARY_MOUNT}:ro"))],
            entrypoint: Some(vec!["pg_controldata".into()]),
            cmd: Some(vec![PRIMARY_MOUNT.into()]),
            ..CreateContainer::default()
        })
        .await?;
    let run = async {
        engine.start_container(&name).await?;
        engine.wait_container(&name).await
    }
    .await;
    let output = engine.logs(&name, 100).await.unwrap_or_default();
    engine.remove_container(&name).await?;
    let code = run?;
    match parse_control_data(&output) {
        Some(c) if code == 0 => Ok(c),
        _ => Err(Error::Apply(format!(
            "cannot read generation {from}'s control data (pg_controldata exit {code}):\n{}",
            output.trim_end()
        ))),
    }
}

/// The standby's system identifier and WAL replay position.
pub async fn standby_position<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
) -> Result<(String, u64), Error> {
    let line = value(
        engine,
        container,
        creds,
        "select (select system_identifier from pg_control_system()) || ' ' || \
         coalesce(pg_last_wal_replay_lsn()::text, '0/0')",
    )
    .await?;
    let (id, lsn) = line.split_once(' ').unwrap_or((&line, ""));
    let lsn = parse_lsn(lsn)
        .ok_or_else(|| Error::Apply(format!("{container} gave no replay position: {line:?}")))?;
    Ok((id.to_string(), lsn))
}

/// Promotes the standby (unless a resumed run already did), removes its standby
/// settings and password file, and checks that it is a primary that accepts a
/// write and holds no slot of gemctl's. One `docker exec` and one session: this is
/// in the freeze. `pg_promote(wait => true)` looks every 100 ms whether the
/// promotion finished; here the session looks every 2 ms instead (a promotion
/// takes a few ms: the end-of-recovery checkpoint is requested, not waited for).
/// A session that began in recovery writes once it ended: each statement is a
/// transaction of its own (`-c`), and a transaction is read-only only when it
/// starts in recovery.
pub async fn promote<E: Engine>(
    engine: &E,
    spec: &Spec,
    container: &str,
    creds: &DbCredentials,
) -> Result<(), Error> {
    let passfile = format!("{}/{PASSFILE}", spec.db.data_dir.trim_end_matches('/'));
    let script = r#"set -eu
psql -X -qtA -v ON_ERROR_STOP=1 -U "$1" -d "$2" \
  -c "select case when pg_is_in_recovery() then pg_promote(false)::text else 'true' end" \
  -c "do \$\$ declare deadline timestamptz := clock_timestamp() + interval '60 s'; begin
        while pg_is_in_recovery() loop
          if clock_timestamp() > deadline then
            raise exception 'the promotion did not finish within 60s';
          end if;
          perform pg_sleep(0.002);
        end loop;
      end \$\$" \
  -c "alter system reset primary_conninfo" -c "alter system reset primary_slot_name" \
  -c "select pg_reload_conf()" \
  -c "create temp table gemctl_write_check (x int)" -c "drop table gemctl_write_check" \
  -c "select 'state ' || pg_is_in_recovery()::text || ' ' || (select count(*) from pg_replication_slots where slot_name like 'gemctl\_%')"
rm -f "$3"
"#;
    let cmd: Vec<String> = [
        "bash",
        "-c",
        script,
        "promote",
        &creds.user,
        &creds.database,
        &passfile,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = engine.exec(container, &cmd).await?;
    let state = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("state "));
    match (out.exit_code, state) {
        (0, Some("false 0")) => Ok(()),
        (0, other) => Err(Error::Apply(format!(
            "{container} is not a primary without replication slots after its promotion \
             (in recovery, slots: {other:?})"
        ))),
        (code, _) => Err(Error::Apply(format!(
            "the promotion of {container} failed (exit {code}): {}",
            format!("{}{}", out.stderr, out.stdout).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_parse_as_postgresql_writes_them() {
        assert_eq!(parse_lsn("0/3000028"), Some(0x3000028));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn(""), None);
    }

    #[test]
    fn wal_positions_are_written_back_as_postgresql_reads_them() {
        for text in ["0/3000028", "16/B374D848", "0/0"] {
            assert_eq!(format_lsn(parse_lsn(text).unwrap()), text);
        }
    }

    #[test]
    fn control_data_gives_state_system_and_checkpoint() {
        let text = "pg_control version number:            1300\n\
                    Database system identifier:           7441234567890123456\n\
                    Database cluster state:               shut down\n\
                    Latest checkpoint location:           0/1A000028\n";
        let c = parse_control_data(text).unwrap();
        assert_eq!(c.state, "shut down");
        assert_eq!(c.system_identifier, "7441234567890123456");
        assert_eq!(c.checkpoint, 0x1A000028);
        assert_eq!(parse_control_data("garbage"), None);
    }

    #[test]
    fn the_control_file_is_read_from_its_first_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("global")).unwrap();
        let mut bytes = vec![0u8; 512];
        bytes[0..8].copy_from_slice(&7712727131625906201u64.to_le_bytes());
        bytes[8..12].copy_from_slice(&1300u32.to_le_bytes());
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        bytes[32..40].copy_from_slice(&0x15011A8u64.to_le_bytes());
        let file = dir.path().join("global").join("pg_control");
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            read_control_file(dir.path()),
            Some(ControlData {
                state: "shut down".into(),
                system_identifier: "7712727131625906201".into(),
                checkpoint: 0x15011A8,
            })
        );
        bytes[16..20].copy_from_slice(&6u32.to_le_bytes());
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            read_control_file(dir.path()).unwrap().state,
            "in production"
        );
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read_control_file(dir.path()), None, "not a layout it knows");
        assert_eq!(read_control_file(&dir.path().join("none")), None);
    }

    #[test]
    fn the_standby_settings_carry_no_password_and_the_label_parses() {
        let text = "project: shop\ngeneration: 2\nstorage: /srv/shop\n\
                    app: { image: \"example/shop:1\" }\n\
                    db: { image: \"postgres:15\", env: { POSTGRES_USER: shop } }\n";
        let spec = Spec::parse(std::path::Path::new("s.yaml"), text).unwrap();
        let creds = DbCredentials::from_env(&[
            "POSTGRES_USER=shop".into(),
            "POSTGRES_PASSWORD=s3:cret\\pw".into(),
        ]);
        let line = standby_conf_line(&spec, &creds, 1, 2);
        assert!(!line.contains("s3"), "{line}");
        assert!(line.starts_with("primary_conninfo = '"), "{line}");
        assert!(line.contains("application_name=gemctl_2"), "{line}");
        assert!(!line.contains("primary_slot_name"), "{line}");
        assert_eq!(
            standby_passfile(&spec, &creds, 1),
            "db-1:5432:*:shop:s3\\:cret\\\\pw\n"
        );
        for script in [
            BACKUP_SESSION_SCRIPT,
            BACKUP_STARTED_SCRIPT,
            BACKUP_COPIED_SCRIPT,
        ] {
            assert!(!script.contains("s3"), "{script}");
        }
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n";
        let hex: String = label.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            parse_label(&format!("1\ngemctl-label {hex} 0\ngemctl-copied ok\n")),
            Some((label.to_string(), 0))
        );
        assert_eq!(parse_label("gemctl-label 0 0"), None);
        assert_eq!(parse_label("nothing"), None);
    }
}
