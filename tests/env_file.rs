//! A bad env file on the real engine: refused when the spec is loaded, before
//! gemctl creates anything, and never echoed.
//!
//! Needs the images from `scripts/build-images`.

mod real;

use real::*;

/// Defect 8 of issue 9: a NUL byte in an env file value made `apply` print
/// Docker's raw error, secret included, and leave a db and the network behind.
#[test]
fn nul_in_env_file_is_refused_before_anything_is_created_and_not_echoed() {
    let p = Project::new("nulenv");
    let env = p.dir.join("secrets.env");
    std::fs::write(&env, b"POSTGRES_PASSWORD=s3cret\0leak\nPGPASSWORD=s3cret\n").unwrap();

    // Commands that deploy read the env files; read-only ones (status, logs,
    // history, unlock…) do not need the secrets and keep working.
    for command in ["apply", "diff", "rollback"] {
        let o = p.gemctl(&[command]);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(1), "{command}: {out}");
        assert!(
            out.contains(&format!(
                "{}:1:25: app.env_file, db.env_file: the value of POSTGRES_PASSWORD \
                 contains a NUL byte",
                env.display()
            )),
            "{command}: {out}"
        );
        assert!(
            !out.contains("s3cret") && !out.contains("leak"),
            "{command} echoed the secret: {out}"
        );
    }
    let by_name = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", p.name),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(by_name, "", "no container was created");
    assert!(p.containers().is_empty(), "{:?}", p.containers());
    let networks = docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !networks.lines().any(|n| n.starts_with(&p.name)),
        "no network was created: {networks}"
    );
    assert!(p.generations_on_disk().is_empty(), "no data directory");

    // The same project deploys once the file is fixed.
    std::fs::write(&env, "POSTGRES_PASSWORD=s3cret\nPGPASSWORD=s3cret\n").unwrap();
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(p.report().starts_with("OK "), "{}", p.report());
}
