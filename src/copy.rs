//! Moving a generation's data into the next one, and proving it arrived.
//!
//! The copy (`dump` mode) runs a one-shot container of the db image on the private
//! network: `pg_dumpall` of the old db piped into `psql` on the new one, so every
//! database, table and role is carried and the old db is only read (I2). The new db
//! was initialised by the same image with the same POSTGRES_USER / POSTGRES_DB, so
//! the dump's `CREATE ROLE` of that user and `CREATE DATABASE` of that database are
//! dropped from the stream; any other error stops the copy.
//!
//! Verification compares, database by database and table by table, the exact row
//! count and an md5 over the rows' text in both dbs.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

fn quote_sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Regex-escapes for `sed` basic regular expressions.
fn sed_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\^$.*[]/".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The shell pipeline the copy container runs.
pub fn copy_script(creds: &DbCredentials, from_host: &str, to_host: &str) -> String {
    let user = sed_escape(&creds.user);
    let db = sed_escape(&creds.database);
    // pg_dumpall quotes identifiers only when needed: match both spellings.
    format!(
        "set -euo pipefail; \
         pg_dumpall -h {from} -U {u} \
         | sed -e '/^CREATE ROLE \"\\?{user}\"\\?;$/d' -e '/^CREATE DATABASE \"\\?{db}\"\\? /d' \
         | psql -h {to} -U {u} -d postgres -v ON_ERROR_STOP=1 -q -o /dev/null",
        from = quote_sh(from_host),
        to = quote_sh(to_host),
        u = quote_sh(&creds.user),
    )
}

/// Copies generation `from`'s databases into generation `to`'s with a one-shot
/// container. `env` is the db's environment (secrets included, never printed).
pub async fn copy<E: Engine>(
    engine: &E,
    spec: &Spec,
    env: &[String],
    from: u64,
    to: u64,
) -> Result<(), Error> {
    let creds = DbCredentials::from_env(env);
    let script = copy_script(
        &creds,
        &desired::container_name(spec, Role::Db, from),
        &desired::container_name(spec, Role::Db, to),
    );
    run_one_shot(
        engine,
        spec,
        OneShot {
            name: desired::copy_container_name(spec, to),
            generation: to,
            image: spec.db.image.to_string(),
            env: creds.pg_env(),
            binds: Vec::new(),
            script,
            what: format!("the copy from generation {from} to {to}"),
        },
    )
    .await
    .map_err(|e| Error::Apply(format!("{e}\nGeneration {from}'s data is untouched.")))
}

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
    let labels = BTreeMap::from([
        (labels::PROJECT.to_string(), spec.project.clone()),
        (labels::ROLE.to_string(), labels::ROLE_COPY.to_string()),
        (labels::GENERATION.to_string(), job.generation.to_string()),
    ]);
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
    let logs = engine.logs(&name, 40).await.unwrap_or_default();
    engine.remove_container(&name).await?;
    match result? {
        0 => Ok(()),
        code => Err(Error::Apply(format!(
            "{} failed (exit {code}). Last output of {name}:\n{}",
            job.what,
            logs.trim_end()
        ))),
    }
}

/// Per table: exact row count and md5 of the rows' text, in row-text order.
const TABLE_DIGEST_SQL: &str = "\
select table_schema || '.' || table_name || ' ' || \
  (xpath('/row/c/text()', query_to_xml(format('select count(*) || '':'' || \
     md5(coalesce(string_agg(t::text, chr(10) order by t::text), '''')) as c from %I.%I t', \
     table_schema, table_name), false, true, '')))[1]::text \
from information_schema.tables \
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') \
order by 1";

const DATABASES_SQL: &str = "select datname from pg_database where not datistemplate order by 1";

async fn psql<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
    database: &str,
    sql: &str,
) -> Result<Vec<String>, Error> {
    let cmd: Vec<String> = [
        "psql",
        "-U",
        &creds.user,
        "-d",
        database,
        "-X",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
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

/// `database → table → "rows:md5"` of every non-template database in a db container.
pub async fn digest<E: Engine>(
    engine: &E,
    container: &str,
    creds: &DbCredentials,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    let mut out = BTreeMap::new();
    for db in psql(engine, container, creds, "postgres", DATABASES_SQL).await? {
        let mut tables = BTreeMap::new();
        for line in psql(engine, container, creds, &db, TABLE_DIGEST_SQL).await? {
            if let Some((table, value)) = line.split_once(' ') {
                tables.insert(table.to_string(), value.to_string());
            }
        }
        out.insert(db, tables);
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
    let src = digest(engine, &src_name, &creds).await?;
    let dst = digest(engine, &dst_name, &creds).await?;
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
            "the copy into generation {to} differs from generation {from} (rows:md5):\n  {}",
            differences.join("\n  ")
        )))
    }
}
