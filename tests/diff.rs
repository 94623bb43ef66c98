//! `gemctl diff` against the real engine: what changes in each container, read from
//! the settings gemctl recorded when it made them (defect 11 of issue 9).

mod real;

use real::{Project, docker_ok};

/// The project's spec at `generation` with the app's `LOG_LEVEL`, its ports listed
/// in the usual order or reversed.
fn write_spec(p: &Project, generation: u64, log_level: &str, ports_reversed: bool) {
    p.write_spec(generation, "1", 2, "scope: project");
    let mut text = std::fs::read_to_string(&p.spec).unwrap();
    text = text.replace(
        "env: { PGUSER: app, PGDATABASE: app }",
        &format!("env: {{ PGUSER: app, PGDATABASE: app, LOG_LEVEL: {log_level} }}"),
    );
    if ports_reversed {
        let usual = format!(
            r#"ports: ["127.0.0.1:{}:8080", "127.0.0.1:{}:7000"]"#,
            p.http, p.tcp
        );
        let reversed = format!(
            r#"ports: ["127.0.0.1:{}:7000", "127.0.0.1:{}:8080"]"#,
            p.tcp, p.http
        );
        assert!(text.contains(&usual));
        text = text.replace(&usual, &reversed);
    }
    std::fs::write(&p.spec, text).unwrap();
}

/// `diff` as text and as JSON: exit codes, stdout of each, and everything printed.
fn diff(p: &Project) -> (i32, String, i32, serde_json::Value, String) {
    let text = p.gemctl(&["diff"]);
    let json = p.gemctl(&["diff", "-o", "json"]);
    let everything = [&text.stdout, &text.stderr, &json.stdout, &json.stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<String>();
    (
        text.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text.stdout).into_owned(),
        json.status.code().unwrap_or(-1),
        serde_json::from_slice(&json.stdout).expect("diff -o json prints JSON"),
        everything,
    )
}

#[test]
fn env_change_shows_in_diff_and_a_reordered_port_list_is_no_change() {
    let p = Project::new("diffenv");
    write_spec(&p, 1, "debug", false);
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");

    let settings = docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.gemctl.settings\"}}",
        &p.app(1),
    ]);
    assert!(settings.contains(r#""LOG_LEVEL":"debug""#), "{settings}");
    assert!(settings.contains("secrets.env"), "{settings}");
    assert!(
        !settings.contains("s3cret"),
        "an env_file value leaked: {settings}"
    );

    // Same generation, ports listed the other way round: nothing changes.
    write_spec(&p, 1, "debug", true);
    let (code, text, json_code, json, everything) = diff(&p);
    assert_eq!((code, json_code), (0, 0), "{everything}");
    assert!(
        text.contains("Nothing to do.") && !text.contains("port:"),
        "{text}"
    );
    assert_eq!(json["status"], "in_sync");
    assert_eq!(json["changes"], serde_json::json!([]));

    // An env value changed without a new generation: refused, naming the key.
    write_spec(&p, 1, "info", true);
    let (code, text, json_code, json, everything) = diff(&p);
    assert_eq!((code, json_code), (3, 3), "{everything}");
    let named = "env.LOG_LEVEL changed: debug → info";
    assert!(text.contains(named), "{text}");
    let seen = json["refusal"]["problems"][0]["seen"].as_str().unwrap();
    assert!(seen.contains(named), "{seen}");
    assert!(!everything.contains("s3cret"), "{everything}");

    // The same change as generation 2: the diff shows the key with both values.
    write_spec(&p, 2, "info", true);
    let (code, text, json_code, json, everything) = diff(&p);
    assert_eq!((code, json_code), (2, 2), "{everything}");
    assert!(
        text.contains(&format!("--- {} (observed)", p.app(1)))
            && text.contains(&format!("+++ {} (desired)", p.app(2))),
        "{text}"
    );
    assert!(
        text.contains("\n-env.LOG_LEVEL: debug\n") && text.contains("\n+env.LOG_LEVEL: info\n"),
        "{text}"
    );
    assert!(
        !text.contains("\n-port:") && !text.contains("\n+port:"),
        "{text}"
    );
    let change = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "env.LOG_LEVEL")
        .unwrap_or_else(|| panic!("no env.LOG_LEVEL change in {}", json["changes"]));
    assert_eq!(
        change,
        &serde_json::json!({
            "container": p.app(2),
            "field": "env.LOG_LEVEL",
            "from": "debug",
            "to": "info",
        })
    );
    let app_diff = json["container_diffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["container"] == p.app(2).as_str())
        .unwrap();
    assert!(
        app_diff["text"]
            .as_str()
            .unwrap()
            .contains("+env.LOG_LEVEL: info"),
        "{app_diff}"
    );
    assert!(!everything.contains("s3cret"), "{everything}");

    // Applied, the host is in sync with the reordered ports and the new value.
    let (code, out) = p.apply(&[]);
    assert_eq!(code, 0, "{out}");
    let (code, _, json_code, json, everything) = diff(&p);
    assert_eq!((code, json_code), (0, 0), "{everything}");
    assert_eq!(json["changes"], serde_json::json!([]));
}
