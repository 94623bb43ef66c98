//! Moving a generation's data into the next one, and proving it arrived.
//!
//! The copy (`dump` mode) runs a one-shot container of the new db's image on the
//! private network: the roles from `pg_dumpall --globals-only`, then every
//! database with `pg_dump` into `psql`, or `pg_dump -Fd -j` then `pg_restore -j`
//! where tables can be moved side by side (see `COPY_SCRIPT`). Every database,
//! table, sequence, role, owner and grant is carried and the old db is only read
//! (I2). The new db was initialised by the same image with the same
//! POSTGRES_USER / POSTGRES_DB: that user keeps the spec's password, that
//! database is created again from the dump; any other error stops the copy.
//!
//! Verification compares, database by database and table by table, the exact row
//! count and a checksum over the rows' text, both computed inside each server,
//! every database of both servers in its own session, several at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::StreamExt;

use crate::desired::{self, Role};
use crate::engine::{CreateContainer, Engine, ExecOutput};
use crate::error::Error;
use crate::labels;
use crate::spec::Spec;

/// The superuser and default database the db image was told to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// `POSTGRES_USER` (default `postgres`).
    pub user: String,
    /// `POSTGRES_DB` (default: the user).
    pub database: String,
    /// `POSTGRES_PASSWORD`, if set (secret).
    pub password: Option<String>,
}

impl DbCredentials {
    /// `PGUSER` / `PGPASSWORD` for the PostgreSQL clients of a one-shot container.
    pub fn pg_env(&self) -> Vec<String> {
        let mut env = vec![format!("PGUSER={}", self.user)];
        if let Some(p) = &self.password {
            env.push(format!("PGPASSWORD={p}"));
        }
        env
    }

    /// Reads them from the db's environment (`KEY=value` pairs, env file included).
    pub fn from_env(env: &[String]) -> DbCredentials {
        let get = |k: &str| {
            env.iter()
                .rev()
                .find_map(|e| e.strip_prefix(k)?.strip_prefix('=').map(str::to_string))
        };
        let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
        DbCredentials {
            database: get("POSTGRES_DB").unwrap_or_else(|| user.clone()),
            password: get("POSTGRES_PASSWORD"),
            user,
        }
    }
}

/// The script the copy container runs. `FROM` and `TO` are the db hosts,
/// `SUPERUSER` / `SUPERDB` what the image created in the new db.
///
/// Roles first (the superuser exists already, with this spec's password: its
/// `CREATE ROLE` and `ALTER ROLE ... WITH` lines are dropped, its settings and
/// memberships kept). Then each database as `pg_dumpall` does it: `postgres` and
/// `template1` exist everywhere and get their contents; every other database is
/// created from the dump with its owner, settings and grants, which for the
/// image's own empty `SUPERDB` means dropping that first.
///
/// `pg_dump | psql` works at both ends at once. A directory-format dump and
/// `pg_restore`, both with `-j`, move tables side by side but one end after the
/// other, and each stream keeps two processes busy (a server and a client) on a
/// host that runs both dbs: it only pays with at least two big tables and two
/// cores per stream. On two cores it measured slower (`benches/upgrade.rs`).
/// Its scratch directory is in the container's own layer: it goes with it.
/// Each database copied prints one `gemctl-copy: copied` line, saying how.
const COPY_SCRIPT: &str = r#"set -euo pipefail
step=starting
trap 'rc=$?; if (( rc != 0 )); then echo "gemctl-copy: failed while $step (exit $rc)" >&2; fi' EXIT
jobs=$(( $(nproc) / 2 ))
if (( jobs > 4 )); then jobs=4; fi
# pg_dump and psql read a -d holding '=' as a connection string: always give one.
conn() { local v=${1//\\/\\\\}; v=${v//\'/\\\'}; printf "dbname='%s'" "$v"; }
q() { psql -h "$1" -d "$(conn "$2")" -XAtq -v ON_ERROR_STOP=1 "${@:3}"; }
w=$(mktemp -d /tmp/gemctl-copy.XXXXXX)

step="copying the roles (pg_dumpall --globals-only)"
pg_dumpall -h "$FROM" --globals-only \
  | awk -v u="$SUPERUSER" '$0 != "CREATE ROLE " u ";" && $0 != "CREATE ROLE \"" u "\";" &&
      index($0, "ALTER ROLE " u " WITH ") != 1 && index($0, "ALTER ROLE \"" u "\" WITH ") != 1' \
  | psql -h "$TO" -d postgres -X -q -v ON_ERROR_STOP=1 -o /dev/null

step="listing the databases"
q "$FROM" postgres -c "select datname from pg_database
  where datallowconn and datname <> 'template0' order by datname <> 'template1', datname" > "$w/names"
while IFS= read -r d; do
  target=$d
  create=()
  if [[ $d != postgres && $d != template1 ]]; then
    target=postgres
    create=(--create)
    if [[ $d == "$SUPERDB" ]]; then
      step="dropping the new db's empty $d to create it from the dump"
      printf '%s' "select format('drop database if exists %I with (force)', :'d') \gexec" \
        | q "$TO" postgres -v d="$d" > /dev/null
    fi
  fi
  step="measuring database $d"
  big=$(q "$FROM" "$d" -c "select count(*) from pg_class where relkind = 'r'
    and relpersistence = 'p' and relnamespace not in ('pg_catalog'::regnamespace,
    'information_schema'::regnamespace) and pg_table_size(oid) >= 8 * 1024 * 1024")
  n=$(( big < jobs ? big : jobs ))
  if (( n >= 2 )); then
    how="pg_dump -Fd -j $n, pg_restore -j $n"
    step="dumping database $d ($how)"
    pg_dump -h "$FROM" -d "$(conn "$d")" -Fd -j "$n" -Z 0 -f "$w/db"
    step="restoring database $d ($how)"
    pg_restore -h "$TO" -d "$(conn "$target")" "${create[@]}" -j "$n" --exit-on-error "$w/db"
    rm -rf "$w/db"
  else
    how="pg_dump | psql"
    step="copying database $d ($how)"
    pg_dump -h "$FROM" -d "$(conn "$d")" "${create[@]}" \
      | psql -h "$TO" -d "$(conn "$target")" -X -q -v ON_ERROR_STOP=1 -o /dev/null
  fi
  echo "gemctl-copy: copied database $d ($how)"
done < "$w/names"
"#;

/// The one-shot job that copies generation `from`'s databases into generation
/// `to`'s. `env` is the db's environment (secrets included, never printed).
pub fn copy_job(spec: &Spec, env: &[String], from: u64, to: u64) -> OneShot {
    let creds = DbCredentials::from_env(env);
    let mut container_env = creds.pg_env();
    container_env.extend([
        format!("FROM={}", desired::container_name(spec, Role::Db, from)),
        format!("TO={}", desired::container_name(spec, Role::Db, to)),
        format!("SUPERUSER={}", creds.user),
        format!("SUPERDB={}", creds.database),
    ]);
    OneShot {
        name: desired::copy_container_name(spec, to),
        generation: to,
        image: spec.db.image.to_string(),
        env: container_env,
        binds: Vec::new(),
        script: COPY_SCRIPT.into(),
        what: format!("the copy from generation {from} to {to}"),
    }
}

/// Copies generation `from`'s databases into generation `to`'s with a one-shot
/// container. `env` is the db's environment (secrets included, never printed).
/// Returns how each database was copied (`app (pg_dump | psql)`), for reports.
pub async fn copy<E: Engine>(
    engine: &E,
    spec: &Spec,
    env: &[String],
    from: u64,
    to: u64,
) -> Result<Vec<String>, Error> {
    let output = run_one_shot_output(engine, spec, copy_job(spec, env, from, to))
        .await
        .map_err(|e| Error::Apply(format!("{e}\nGeneration {from}'s data is untouched.")))?;
    Ok(copied_databases(&output))
}

/// The databases a copy's output says it copied, each with how.
pub fn copied_databases(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("gemctl-copy: copied database "))
        .map(str::to_string)
        .collect()
}

/// The output lines a one-shot job keeps: enough for a copy's line per database
/// in most clusters, and for the cause of a failure.
const OUTPUT_LINES: usize = 40;

/// A one-shot container of the db image on the project's private network: it
/// runs `script` with bash and is removed when it ends.
pub struct OneShot {
    /// Container name (recognised by the planner as this project's).
    pub name: String,
    /// The generation it works for (its label).
    pub generation: u64,
    /// Image.
    pub image: String,
    /// Environment (secrets included, never printed).
    pub env: Vec<String>,
    /// Bind mounts.
    pub binds: Vec<(PathBuf, String)>,
    /// The bash script.
    pub script: String,
    /// What it does, for errors.
    pub what: String,
}

/// Runs a [`OneShot`] to its end and removes it; an error carries its exit code
/// and last output.
pub async fn run_one_shot<E: Engine>(engine: &E, spec: &Spec, job: OneShot) -> Result<(), Error> {
    run_one_shot_output(engine, spec, job).await.map(drop)
}

/// As [`run_one_shot`], returning the last lines of its output.
pub async fn run_one_shot_output<E: Engine>(
    engine: &E,
    spec: &Spec,
    job: OneShot,
) -> Result<String, Error> {
    let labels = BTreeMap::from([
        (labels::PROJECT.to_string(), spec.project.clone()),
        (labels::ROLE.to_string(), labels::ROLE_COPY.to_string()),
        (labels::GENERATION.to_string(), job.generation.to_string()),
    ]);
    run_one_shot_labelled(engine, spec, job, labels).await
}

/// As [`run_one_shot_output`], the container labelled `labels` (a throwaway
/// copy's one-shot is not a generation's).
pub async fn run_one_shot_labelled<E: Engine>(
    engine: &E,
    spec: &Spec,
    job: OneShot,
    labels: BTreeMap<String, String>,
) -> Result<String, Error> {
    let name = job.name;
    engine.remove_container(&name).await?;
    engine
        .create_container(&CreateContainer {
            name: name.clone(),
            image: job.image,
            env: job.env,
            labels,
            network: Some(spec.network_name()),
            binds: job.binds,
            entrypoint: Some(vec!["bash".into(), "-c".into()]),
            cmd: Some(vec![job.script]),
            ..CreateContainer::default()
        })
        .await?;
    let result = async {
        engine.start_container(&name).await?;
        engine.wait_container(&name).await
    }
    .await;
    let logs = engine.logs(&name, OUTPUT_LINES).await.unwrap_or_default();
    engine.remove_container(&name).await?;
    match result? {
        0 => Ok(logs),
        code => Err(Error::Apply(format!(
            "{} failed (exit {code}). Last output of {name}:\n{}",
            job.what,
            logs.trim_end()
        ))),
    }
}

/// Per table: the exact row count and a checksum of the rows' text, computed
/// where the rows are, so only one line per table leaves the server. The
/// checksum is the md5 of two sums of 64-bit hashes (two seeds) of every row's
/// text: a sum needs no order, so no sort and no string of the whole table (a
/// string over 1 GB cannot be built). `hashtextextended` is the hash of hash
/// partitioning, kept equal across major versions, so a 15 → 17 copy compares
/// too. Each table's query is run by `\gexec` as a statement of its own, so the
/// server may scan it with its parallel workers.
///
/// A row's text depends on the session's settings: they are fixed first, so two
/// servers whose defaults differ (another image, another version) still agree.
const TABLE_DIGEST_SCRIPT: &str = "\
set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres';
set extra_float_digits = 1; set bytea_output = 'hex';
select format('select %L || '' '' || count(*) || '':'' || \
  md5(coalesce(sum(hashtextextended(r, 0)), 0) || '','' || \
      coalesce(sum(hashtextextended(r, 1)), 0)) \
  from (select t::text as r from %I.%I t) s', \
  table_schema || '.' || table_name, table_schema, table_name) \
from information_schema.tables \
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') \
order by table_schema, table_name
\\gexec
";

const DATABASES_SQL: &str = "select datname from pg_database where not datistemplate order by 1;";

/// Sessions the verification runs at once, over both dbs: enough that the
/// two servers work together, no more than the machine's cores (up to 4).
fn sessions() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Runs a psql script (SQL and backslash commands) in a db container; its
/// output lines.
pub(crate) async fn psql<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
    database: &str,
    script: &str,
) -> Result<Vec<String>, Error> {
    let cmd: Vec<String> = [
        "sh",
        "-c",
        r#"printf '%s\n' "$1" | psql -U "$2" -d "$3" -X -q -tA -v ON_ERROR_STOP=1"#,
        "sh",
        script,
        &creds.user,
        database,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ExecOutput {
        exit_code,
        stdout,
        stderr,
    } = engine.exec(container, &cmd).await?;
    if exit_code != 0 {
        return Err(Error::Apply(format!(
            "query in {container} (database {database}) failed: {}",
            stderr.trim()
        )));
    }
    Ok(stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// `database → table → "rows:checksum"` of every non-template database.
pub type Digest = BTreeMap<String, BTreeMap<String, String>>;

/// The [`Digest`]s of several db containers, computed together: every
/// database of every container is one session, [`sessions`] of them at once.
pub async fn digests<E: Engine>(
    engine: &E,
    containers: &[&str],
    creds: &DbCredentials,
) -> Result<Vec<Digest>, Error> {
    let lists = futures_util::future::try_join_all(
        containers
            .iter()
            .map(|c| psql(engine, c, creds, "postgres", DATABASES_SQL)),
    )
    .await?;
    // Database by database across the containers, so the same database's
    // sessions (likely the same size) run side by side.
    let mut jobs: Vec<(usize, &str, &String)> = containers
        .iter()
        .enumerate()
        .zip(&lists)
        .flat_map(|((i, c), dbs)| dbs.iter().map(move |db| (i, *c, db)))
        .collect();
    jobs.sort_by_key(|(i, _, db)| (*db, *i));
    let results: Vec<_> =
        futures_util::stream::iter(jobs.into_iter().map(|(i, c, db)| async move {
            let lines = psql(engine, c, creds, db, TABLE_DIGEST_SCRIPT).await?;
            let tables: BTreeMap<String, String> = lines
                .iter()
                .filter_map(|l| l.split_once(' '))
                .map(|(t, v)| (t.to_string(), v.to_string()))
                .collect();
            Ok::<_, Error>((i, db.clone(), tables))
        }))
        .buffer_unordered(sessions())
        .collect()
        .await;
    let mut out = vec![Digest::new(); containers.len()];
    for result in results {
        let (i, db, tables) = result?;
        out[i].insert(db, tables);
    }
    Ok(out)
}

/// The outcome of a verification, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Databases compared.
    pub databases: usize,
    /// Tables compared.
    pub tables: usize,
    /// Rows in all tables.
    pub rows: u64,
}

/// Compares generation `to`'s data with generation `from`'s; an error lists every
/// difference.
pub async fn verify<E: Engine>(
    engine: &E,
    spec: &Spec,
    env: &[String],
    from: u64,
    to: u64,
) -> Result<Verified, Error> {
    let creds = DbCredentials::from_env(env);
    let src_name = desired::container_name(spec, Role::Db, from);
    let dst_name = desired::container_name(spec, Role::Db, to);
    let [src, dst]: [Digest; 2] = digests(engine, &[&src_name, &dst_name], &creds)
        .await?
        .try_into()
        .expect("one digest per container");
    let mut differences = Vec::new();
    let mut verified = Verified {
        databases: src.len(),
        tables: 0,
        rows: 0,
    };
    for (db, tables) in &src {
        for (table, value) in tables {
            verified.tables += 1;
            verified.rows += value
                .split(':')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let theirs = dst.get(db).and_then(|t| t.get(table));
            if theirs != Some(value) {
                differences.push(format!(
                    "{db}.{table}: {src_name} has {value}, {dst_name} has {}",
                    theirs.map_or("nothing", String::as_str)
                ));
            }
        }
    }
    if differences.is_empty() {
        Ok(verified)
    } else {
        Err(Error::Apply(format!(
            "the copy into generation {to} differs from generation {from} (rows:checksum):\n  {}",
            differences.join("\n  ")
        )))
    }
}
