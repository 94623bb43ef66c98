//! The dump copy of an upgrade on the real engine with real PostgreSQL, beyond
//! the app's one table: several databases, a sequence, a role with a password,
//! an owner, a grant and a database setting all reach the new generation, both
//! through `pg_dump | psql` and through the side-by-side path (`pg_dump -Fd -j` /
//! `pg_restore -j`); and the verification finds a row that differs.
//!
//! Needs the images from `scripts/build-images`.

mod real;

use std::time::Duration;

use real::*;

/// Per table of `database`: `name count:md5` of its rows in row-text order, and
/// every sequence's position; computed with no help from gemctl.
fn contents(db: &str, database: &str) -> String {
    let tables = sql(
        db,
        database,
        "select string_agg(table_name, ' ' order by table_name) from information_schema.tables \
         where table_schema = 'public' and table_type = 'BASE TABLE'",
    );
    let mut out = Vec::new();
    for table in tables.split_whitespace() {
        out.push(format!(
            "{table} {}",
            sql(
                db,
                database,
                &format!(
                    "select count(*) || ':' || md5(coalesce(string_agg(t::text, ',' \
                     order by t::text), '')) from {table} t"
                ),
            )
        ));
    }
    out.push(sql(
        db,
        database,
        "select coalesce(string_agg(format('%s=%s', sequencename, coalesce(last_value::text, 'unused')), \
         ' ' order by sequencename), '') from pg_sequences where schemaname = 'public'",
    ));
    out.join("\n")
}

/// `psql -h 127.0.0.1` as `user` with `password` in `db`: over TCP, so the
/// password is checked.
fn login(db: &str, user: &str, password: &str, database: &str, statement: &str) -> String {
    docker_ok(&[
        "exec",
        "-e",
        &format!("PGPASSWORD={password}"),
        db,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        user,
        "-d",
        database,
        "-X",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        statement,
    ])
}

/// Gives db-1 what the app alone does not: a role with a password and a grant,
/// two more databases (one owned by that role, with a setting), a sequence that
/// moved, two tables over 8 MB, and rows of awkward types.
fn populate(db1: &str) {
    for statement in [
        "create role reader login password 'r3ad-only'",
        "grant select on items to reader",
        "create database shop owner reader",
        "create database audit",
        "alter database shop set work_mem = '8MB'",
    ] {
        sql(db1, "app", statement);
    }
    sql(
        db1,
        "shop",
        "create table orders (id bigserial primary key, note text);
         insert into orders (note) select 'order ' || g from generate_series(1, 500) g;
         create sequence invoice_no start 1000;
         select nextval('invoice_no'), nextval('invoice_no'), nextval('invoice_no');
         create table big_a (id int primary key, pad text);
         insert into big_a select g, repeat(md5(g::text), 7) from generate_series(1, 50000) g;
         create table big_b as select * from big_a;
         grant select on orders to reader;",
    );
    sql(
        db1,
        "audit",
        "create table log (at timestamptz, amount float8, data jsonb, raw bytea, note text);
         insert into log values ('2026-11-25 10:00:00+00', 0.1, '{\"a\": [1, 2]}', '\\x00ff', null),
           ('2026-11-25 10:00:00+00', 0.1, '{\"a\": [1, 2]}', '\\x00ff', null),
           (null, -1e300, 'null', '', 'twice above, on purpose');",
    );
}

const DATABASES: [&str; 3] = ["app", "shop", "audit"];

fn snapshot(db: &str) -> Vec<String> {
    DATABASES.iter().map(|d| contents(db, d)).collect()
}

/// `db` holds `before` (db-1's contents), its sequence goes on, the role logs
/// in with its password and keeps its grants, the superuser keeps the spec's
/// password, the database its owner and setting.
fn assert_carried(db: &str, before: &[String]) {
    assert_eq!(
        snapshot(db),
        before,
        "{db} holds every row and sequence of db-1"
    );
    assert_eq!(
        sql(db, "shop", "select nextval('invoice_no')"),
        "1003",
        "the sequence goes on where it was"
    );
    assert_eq!(
        login(
            db,
            "reader",
            "r3ad-only",
            "shop",
            "select count(*) from orders"
        ),
        "500",
        "the role logs in with its password and keeps its grant"
    );
    assert_eq!(
        login(
            db,
            "reader",
            "r3ad-only",
            "app",
            "select count(*) from items"
        ),
        "1000"
    );
    assert_eq!(
        login(db, "app", "s3cret", "postgres", "select current_user"),
        "app",
        "the superuser keeps the spec's password"
    );
    assert_eq!(
        sql(
            db,
            "app",
            "select pg_get_userbyid(datdba) || ' ' || coalesce((select array_to_string(setconfig, ',') \
             from pg_db_role_setting where setdatabase = d.oid and setrole = 0), '') \
             from pg_database d where datname = 'shop'"
        ),
        "reader work_mem=8MB",
        "the database keeps its owner and setting"
    );
}

#[test]
fn upgrade_by_dump_keeps_every_database_sequence_role_and_grant() {
    let p = Project::new("dumpdb");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(1000);
    populate(&p.db(1));
    let before = snapshot(&p.db(1));
    assert!(before[1].contains("invoice_no=1002"), "{}", before[1]);

    p.write_spec_with(2, "2", 2, "scope: project", "  copy: dump");
    let (code, out) = p.apply(&["-o", "json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("verified 101503 rows in 5 tables of 4 databases"))
        }),
        "every table of every database is verified: {out}"
    );
    assert_carried(&p.db(2), &before);
    assert!(p.report().contains("rows=1000"), "{}", p.report());
}

/// The side-by-side path (`pg_dump -Fd -j`, `pg_restore -j`) is taken with two
/// cores per stream; the container is told it has 8 (`nproc` reads
/// `OMP_NUM_THREADS`), so it runs on any machine.
#[test]
fn parallel_dump_keeps_everything_and_verification_finds_a_row_that_differs() {
    let p = Project::new("dumppar");
    assert_eq!(p.apply(&[]).0, 0);
    p.insert_rows(1000);
    populate(&p.db(1));
    let before = snapshot(&p.db(1));

    // A fresh db as generation 2's, as an upgrade makes it before its copy.
    let data = p.dir.join("fresh-db-2");
    std::fs::create_dir_all(&data).unwrap();
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &p.db(2),
        "--network",
        &format!("{}-net", p.name),
        "--label",
        &format!("io.gemctl.project={}", p.name),
        "--env-file",
        p.dir.join("secrets.env").to_str().unwrap(),
        "-e",
        "POSTGRES_USER=app",
        "-e",
        "POSTGRES_DB=app",
        "-v",
        &format!("{}:/var/lib/postgresql/data", data.display()),
        PG_IMAGE,
    ]);
    wait_until("the fresh db-2 to answer", Duration::from_secs(60), || {
        docker(&["exec", &p.db(2), "pg_isready", "-q", "-h", "127.0.0.1"])
            .status
            .success()
    });

    let spec = gemctl::spec::Spec::load(&p.spec).unwrap();
    let env = gemctl::execute::db_env(&spec).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = rt.block_on(gemctl::docker::Docker::connect()).unwrap();
    let mut job = gemctl::copy::copy_job(&spec, &env, 1, 2);
    job.env.push("OMP_NUM_THREADS=8".into());
    let output = rt
        .block_on(gemctl::copy::run_one_shot_output(&docker, &spec, job))
        .unwrap();
    let copied = gemctl::copy::copied_databases(&output);
    assert!(
        copied.contains(&"shop (pg_dump -Fd -j 2, pg_restore -j 2)".to_string())
            && copied.contains(&"app (pg_dump | psql)".to_string()),
        "{output}"
    );
    assert_carried(&p.db(2), &before);

    let verify = || rt.block_on(gemctl::copy::verify(&docker, &spec, &env, 1, 2));
    let same = verify().unwrap();
    assert_eq!((same.databases, same.tables, same.rows), (4, 5, 101_503));

    // Same count, one value changed: only the checksum can tell.
    sql(
        &p.db(2),
        "shop",
        "update big_b set pad = pad || '.' where id = 7",
    );
    let err = verify().unwrap_err().to_string();
    assert!(
        err.contains("shop.public.big_b: ") && err.contains(" has 50000:"),
        "{err}"
    );
    assert!(
        !err.contains("public.orders"),
        "only the changed table: {err}"
    );
}
