//! An upgrade across PostgreSQL major versions on the real engine: generation 1 on
//! `gemctl-test/postgres:15`, generation 2 on `gemctl-test/postgres:17`. The data
//! can only cross majors through a dump (a streamed copy would hand PostgreSQL 17
//! a version 15 data directory, which it refuses), so this test is the guard that
//! whatever copy mode gemctl picks here carries every database, row, sequence
//! value and role.
//!
//! Needs both postgres images and the app images from `scripts/build-images`.

mod real;

use real::*;

/// Per table of the current database: `schema.table count:md5` of its rows in
/// row-text order, computed inside the server (no rows shipped to the test).
const TABLES_SQL: &str = "\
select table_schema || '.' || table_name || ' ' || \
  (xpath('/row/c/text()', query_to_xml(format('select count(*) || '':'' || \
     md5(coalesce(string_agg(t::text, chr(10) order by t::text), '''')) as c from %I.%I t', \
     table_schema, table_name), false, true, '')))[1]::text \
from information_schema.tables \
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') \
order by 1";

const SEQUENCES_SQL: &str = "select schemaname || '.' || sequencename || ' ' || \
     coalesce(last_value::text, 'unused') from pg_sequences order by 1";

const ROLES_SQL: &str = "select rolname || ' login=' || rolcanlogin || ' super=' || rolsuper \
     from pg_roles where rolname !~ '^pg_' order by 1";

const DATABASES_SQL: &str = "select datname from pg_database where not datistemplate order by 1";

/// Everything an upgrade must carry, as text: the roles, then per database its
/// tables' counts and checksums and its sequences' values.
fn contents(db: &str) -> String {
    let mut out = format!("roles:\n{}\n", sql(db, "postgres", ROLES_SQL));
    for database in sql(db, "postgres", DATABASES_SQL).lines() {
        out += &format!(
            "[{database}]\n{}\n{}\n",
            sql(db, database, TABLES_SQL),
            sql(db, database, SEQUENCES_SQL)
        );
    }
    out
}

/// `psql` as `user` with `password` over TCP inside `db`, so the password is
/// checked (scram-sha-256), not trusted as on the socket.
fn login(db: &str, user: &str, password: &str, query: &str) -> std::process::Output {
    docker(&[
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
        "shop",
        "-X",
        "-tA",
        "-c",
        query,
    ])
}

fn server_major(db: &str) -> String {
    let version = sql(db, "postgres", "show server_version");
    version.split('.').next().unwrap().to_string()
}

#[test]
fn upgrade_from_15_to_17_through_dump_keeps_every_row_sequence_and_role() {
    require_pg17();
    let p = Project::new("major");
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    p.insert_rows(700);
    p.insert_rows(300);

    let db1 = p.db(1);
    assert_eq!(server_major(&db1), "15");
    // A second database with its own table, a sequence part-way through and a
    // login role that may read it, besides the app's own table.
    sql(&db1, "postgres", "create database shop");
    sql(
        &db1,
        "shop",
        "create table orders (id serial primary key, note text, placed date); \
         insert into orders (note, placed) \
           select 'order ' || i, date '2024-01-01' + i from generate_series(1, 1000) i; \
         create sequence invoice_no start 100; \
         select nextval('invoice_no') from generate_series(1, 5); \
         create role clerk login password 'clerk-pw'; \
         grant select on orders to clerk",
    );
    assert_eq!(
        login(&db1, "clerk", "clerk-pw", "select count(*) from orders")
            .status
            .code(),
        Some(0),
        "the role logs in on generation 1"
    );

    let before = contents(&db1);
    for expected in [
        "clerk login=true super=false",
        "[app]\npublic.items 1000:",
        "[shop]\npublic.orders 1000:",
        "public.invoice_no 104",
        "public.orders_id_seq 1000",
    ] {
        assert!(before.contains(expected), "{expected:?} in:\n{before}");
    }

    p.write_spec_db_image(2, "2", PG17_IMAGE);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");

    let db2 = p.db(2);
    assert_eq!(server_major(&db2), "17");
    assert_eq!(
        docker_ok(&["exec", &db2, "cat", "/var/lib/postgresql/data/PG_VERSION"]),
        "17",
        "generation 2's data directory was made by PostgreSQL 17, not copied"
    );
    assert_eq!(contents(&db2), before);

    // The role arrived with its password and its grant; a wrong password is
    // refused, so the login above is a real check.
    let ok = login(&db2, "clerk", "clerk-pw", "select count(*) from orders");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1000");
    let wrong = login(&db2, "clerk", "not-the-password", "select 1");
    assert_ne!(wrong.status.code(), Some(0), "a wrong password is refused");

    // The sequence goes on where it stopped, and the app writes to the new db.
    assert_eq!(sql(&db2, "shop", "select nextval('invoice_no')"), "105");
    assert!(
        p.report().starts_with("OK ") && p.report().contains("gen=2"),
        "tcp report: {}",
        p.report()
    );
    p.insert_rows(5);
    assert!(
        p.table_digest(&db2).starts_with("1005:"),
        "{}",
        p.table_digest(&db2)
    );
}
