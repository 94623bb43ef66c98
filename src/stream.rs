//! The streamed copy's work on the engine: what each step of the streamed upgrade
//! (see `plan::stream`) does to the databases, through `docker exec` in the db
//! containers and one-shot containers of the db image on the private network.
//!
//! Secrets: the password reaches the base backup's one-shot container in its
//! environment only, and the standby reads it from a password file (0600) in its
//! own data directory, removed at the promotion; it is never in a command line, a
//! script, a label, a plan or a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::copy::{self, DbCredentials, OneShot};
use crate::desired::{self, Role};
use crate::engine::{CreateContainer, Engine};
use crate::error::Error;
use crate::labels;
use crate::spec::Spec;

/// The password file the standby reads, in its data directory.
pub const PASSFILE: &str = "gemctl-standby.pgpass";
/// Where the base backup's one-shot container mounts the new data directory.
const STANDBY_MOUNT: &str = "/gemctl-standby";
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

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
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

/// The script of the base backup's one-shot container: a slot an interrupted run
/// left goes, a `CHECKPOINT` (timed on its own: it writes the primary's dirty
/// pages, which is not copying), `pg_basebackup` makes the data directory, and the
/// standby's settings and password file are written into it. No secret is in it:
/// the password comes from the container's environment. It prints
/// `gemctl-timing checkpoint_ms=… copy_ms=…` as its last line.
///
/// `--no-sync`: pg_basebackup would otherwise fsync every file it wrote before
/// returning (`cp -a` does not), which is most of its time on this kind of disk.
/// The sync is not skipped, it moves: a base backup's control file says `in
/// production` (the primary's state when it was copied, with a `backup_label`), and
/// PostgreSQL's startup (`StartupXLOG` in xlog.c) runs `SyncDataDirectory()` — every
/// file of the data directory, per `recovery_init_sync_method` — whenever the
/// control file's state is neither `shut down` nor `shut down in recovery`, before
/// it replays anything (seen with PostgreSQL 15.18: such a standby's start logs
/// "database system was interrupted", then "syncing data directory (fsync)" with
/// `log_startup_progress_interval=1ms`). So the standby's
/// first start (`CreateDb` + `WaitDb`, still before the freeze, while app-n serves)
/// makes the copy durable before it streams or is ever promoted. A host crash
/// between the two leaves generation N `preparing` (never served): the next apply
/// removes its data and makes it again.
///
/// `--no-manifest`: the manifest (a CRC32C of every file) is for `pg_verifybackup`;
/// gemctl checks the copy by construction instead (same system identifier, replay
/// past the source's clean shutdown checkpoint, see `plan::stream`).
pub fn base_backup_script(spec: &Spec, creds: &DbCredentials, from: u64, to: u64) -> String {
    let host = desired::container_name(spec, Role::Db, from);
    let slot = slot_name(to);
    let passfile = format!("{}/{PASSFILE}", spec.db.data_dir.trim_end_matches('/'));
    let conninfo = format!(
        "host={} port=5432 user={} passfile={} application_name={slot}",
        conninfo_value(&host),
        conninfo_value(&creds.user),
        conninfo_value(&passfile),
    );
    let conf_line = format!("primary_conninfo = '{}'", conninfo.replace('\'', "''"));
    format!(
        r#"set -euo pipefail
D={mount}
ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}
psql -X -qtA -v ON_ERROR_STOP=1 -h {host} -d postgres -c "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots where slot_name = '{slot}' and not active" >/dev/null
t0=$(ms)
psql -X -qtA -v ON_ERROR_STOP=1 -h {host} -d postgres -c checkpoint
t1=$(ms)
pg_basebackup --no-password -h {host} -D "$D" -X stream -C -S {slot} --checkpoint=fast --no-sync --no-manifest
t2=$(ms)
touch "$D/standby.signal"
esc() {{ local v=${{1//\\/\\\\}}; printf '%s' "${{v//:/\\:}}"; }}
umask 077
printf '%s:5432:*:%s:%s\n' "$(esc {host})" "$(esc "$PGUSER")" "$(esc "${{PGPASSWORD:-}}")" >"$D/{PASSFILE}"
printf '%s\n' {conf} >>"$D/postgresql.auto.conf"
chown -R postgres:postgres "$D"
chmod 700 "$D"
echo "gemctl-timing checkpoint_ms=$((t1 - t0)) copy_ms=$((t2 - t1))"
"#,
        mount = STANDBY_MOUNT,
        host = sh_quote(&host),
        conf = sh_quote(&conf_line),
    )
}

/// How long the base backup's parts took, as its script measured them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaseBackupTiming {
    /// The `CHECKPOINT` on the primary before the copy.
    pub checkpoint: Duration,
    /// `pg_basebackup` itself.
    pub copy: Duration,
}

/// Reads the script's `gemctl-timing` line.
pub fn parse_base_backup_timing(output: &str) -> Option<BaseBackupTiming> {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("gemctl-timing "))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    Some(BaseBackupTiming {
        checkpoint: field("checkpoint_ms")?,
        copy: field("copy_ms")?,
    })
}

/// Makes generation `to`'s data directory (already created, empty) a base backup
/// of generation `from`'s running db, set up as its standby.
pub async fn base_backup<E: Engine>(
    engine: &E,
    spec: &Spec,
    creds: &DbCredentials,
    from: u64,
    to: u64,
) -> Result<Option<BaseBackupTiming>, Error> {
    copy::run_one_shot_output(
        engine,
        spec,
        OneShot {
            name: desired::copy_container_name(spec, to),
            generation: to,
            image: spec.db.image.to_string(),
            env: creds.pg_env(),
            binds: vec![(desired::data_dir(spec, to), STANDBY_MOUNT.to_string())],
            script: base_backup_script(spec, creds, from, to),
            what: format!("the base backup of generation {from} into generation {to}"),
        },
    )
    .await
    .map(|output| parse_base_backup_timing(&output))
    .map_err(|e| Error::Apply(format!("{e}\nGeneration {from}'s data is untouched.")))
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
    fn the_base_backup_says_how_long_its_parts_took() {
        let out = "NOTICE: something\ngemctl-timing checkpoint_ms=412 copy_ms=1203\n";
        assert_eq!(
            parse_base_backup_timing(out),
            Some(BaseBackupTiming {
                checkpoint: Duration::from_millis(412),
                copy: Duration::from_millis(1203),
            })
        );
        assert_eq!(parse_base_backup_timing("gemctl-timing copy_ms=1"), None);
        assert_eq!(parse_base_backup_timing(""), None);
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
    fn the_base_backup_script_carries_no_password() {
        let text = "project: shop\ngeneration: 2\nstorage: /srv/shop\n\
                    app: { image: \"example/shop:1\" }\n\
                    db: { image: \"postgres:15\", env: { POSTGRES_USER: shop } }\n";
        let spec = Spec::parse(std::path::Path::new("s.yaml"), text).unwrap();
        let creds = DbCredentials::from_env(&[
            "POSTGRES_USER=shop".into(),
            "POSTGRES_PASSWORD=s3cret-pw".into(),
        ]);
        let script = base_backup_script(&spec, &creds, 1, 2);
        assert!(!script.contains("s3cret-pw"), "{script}");
        assert!(script.contains("-S gemctl_2"), "{script}");
        assert!(script.contains("--no-sync"), "{script}");
        assert!(script.contains("primary_conninfo"), "{script}");
        assert!(!script.contains("primary_slot_name"), "{script}");
    }
}
