//! The non-secret settings a container was made from, recorded in its
//! `io.gemctl.settings` label, so that `diff` and the planner can say *what*
//! changed, not only that the fingerprint moved.
//!
//! Settings come from the spec alone: the image, the literal environment (with the
//! variables gemctl adds), the env file's *path*, the network, the public ports and
//! the data mount. The values of an `env_file` are secrets and never enter them.
//! Ports are a set: they are kept sorted, so a reordered list is no change. Pure
//! data and comparisons, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::desired::ContainerConfig;
use crate::labels;
use crate::observed::Container;

/// What gemctl decided about a container when it made it (secrets excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Image reference.
    pub image: String,
    /// Private network.
    pub network: String,
    /// Public ports in Docker syntax, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `host-dir:container-dir` (db only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The secret environment file's path; its values are never recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// Literal environment, including gemctl's own variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The command replacing the image's, one argument per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// User, limits, volumes, operator labels, logging.
    #[serde(default, skip_serializing_if = "RunSettings::is_empty")]
    pub run: RunSettings,
    /// A service's entrypoint replacing the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// A service's restart policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

/// [`crate::desired::RunConfig`] as recorded (it can be read back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nano_cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shm_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    log_options: BTreeMap<String, String>,
}

impl RunSettings {
    fn is_empty(&self) -> bool {
        *self == RunSettings::default()
    }
}

/// One field that differs between two [`Settings`]. A field with several values
/// (`port`) changes value by value: one removed, one added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `image`, `network`, `port`, `mount`, `env_file` or `env.KEY`.
    pub field: String,
    /// The value the container was made with (`None`: the field is added).
    pub from: Option<String>,
    /// The value the spec asks for (`None`: the field is removed).
    pub to: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match (&self.from, &self.to) {
            (Some(a), Some(b)) => write!(f, "{} changed: {} → {}", self.field, shown(a), shown(b)),
            (None, Some(b)) => write!(f, "{} added: {}", self.field, shown(b)),
            (Some(a), None) => write!(f, "{} removed: {}", self.field, shown(a)),
            (None, None) => write!(f, "{} unchanged", self.field),
        }
    }
}

/// Why a container has no settings to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrecorded {
    /// Made by a gemctl that did not record settings yet.
    Missing,
    /// The label is there but does not parse (the reason).
    Unreadable(String),
}

impl std::fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Unrecorded::Missing => f.write_str("made before gemctl recorded settings"),
            Unrecorded::Unreadable(e) => {
                write!(f, "its {} label cannot be read ({e})", labels::SETTINGS)
            }
        }
    }
}

impl Settings {
    /// The settings of a container as the spec describes it.
    pub fn of(config: &ContainerConfig) -> Settings {
        let mut ports = config.ports.clone();
        ports.sort();
        Settings {
            image: config.image.clone(),
            network: config.network.clone(),
            ports,
            mount: config
                .data_mount
                .as_ref()
                .map(|(host, inside)| format!("{}:{inside}", host.display())),
            env_file: config.env_file.clone(),
            env: config.env.clone(),
            command: config.command.clone(),
            run: RunSettings {
                user: config.run.user.clone(),
                memory: config.run.memory,
                nano_cpus: config.run.nano_cpus,
                shm_size: config.run.shm_size,
                volumes: config.run.volumes.clone(),
                labels: config.run.labels.clone(),
                log_driver: config.run.log.as_ref().map(|l| l.driver.clone()),
                log_options: config
                    .run
                    .log
                    .as_ref()
                    .map(|l| l.options.clone())
                    .unwrap_or_default(),
            },
            entrypoint: config
                .service
                .as_ref()
                .map(|s| s.entrypoint.clone())
                .unwrap_or_default(),
            restart: config.service.as_ref().map(|s| s.restart.clone()),
        }
    }

    /// Compact JSON, the value of the [`labels::SETTINGS`] label.
    pub fn label(&self) -> String {
        serde_json::to_string(self).expect("settings serialise")
    }

    /// What a container's [`labels::SETTINGS`] label records.
    pub fn recorded(container: &Container) -> Result<Settings, Unrecorded> {
        let text = container
            .labels
            .get(labels::SETTINGS)
            .ok_or(Unrecorded::Missing)?;
        serde_json::from_str(text).map_err(|e| Unrecorded::Unreadable(e.to_string()))
    }

    /// `(field, value)` in a fixed order; `port` may repeat.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut lines = vec![
            ("image".to_string(), self.image.clone()),
            ("network".to_string(), self.network.clone()),
        ];
        lines.extend(self.ports.iter().map(|p| ("port".to_string(), p.clone())));
        lines.extend(self.mount.iter().map(|m| ("mount".to_string(), m.clone())));
        lines.extend(
            self.env_file
                .iter()
                .map(|p| ("env_file".to_string(), p.display().to_string())),
        );
        lines.extend(
            self.env
                .iter()
                .map(|(k, v)| (format!("env.{k}"), v.clone())),
        );
        if !self.command.is_empty() {
            let shown = serde_json::to_string(&self.command).expect("strings serialise");
            lines.push(("command".into(), shown));
        }
        if !self.entrypoint.is_empty() {
            let shown = serde_json::to_string(&self.entrypoint).expect("strings serialise");
            lines.push(("entrypoint".into(), shown));
        }
        lines.extend(
            self.restart
                .iter()
                .map(|r| ("restart".to_string(), r.clone())),
        );
        let r = &self.run;
        let mut one = |field: &str, value: Option<String>| {
            lines.extend(value.map(|v| (field.to_string(), v)));
        };
        one("user", r.user.clone());
        one("memory", r.memory.map(|b| format!("{b} bytes")));
        one("cpus", r.nano_cpus.map(|n| format!("{}", n as f64 / 1e9)));
        one("shm_size", r.shm_size.map(|b| format!("{b} bytes")));
        one("log.driver", r.log_driver.clone());
        lines.extend(r.volumes.iter().map(|v| ("volume".to_string(), v.clone())));
        lines.extend(
            r.labels
                .iter()
                .map(|(k, v)| (format!("label.{k}"), v.clone())),
        );
        lines.extend(
            r.log_options
                .iter()
                .map(|(k, v)| (format!("log.{k}"), v.clone())),
        );
        lines
    }

    /// One `field: value` line per setting, for a unified diff.
    pub fn text(&self) -> String {
        self.lines()
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", shown(v)))
            .collect()
    }

    /// The fields that differ from `self` (what a container was made from) to `to`
    /// (what the spec asks), in [`Settings::lines`] order.
    pub fn changes(&self, to: &Settings) -> Vec<Change> {
        changes(&self.lines(), &to.lines())
    }

    /// Every field, as added: a container made where none ran before.
    pub fn added(&self) -> Vec<Change> {
        changes(&[], &self.lines())
    }
}

fn changes(old: &[(String, String)], new: &[(String, String)]) -> Vec<Change> {
    let values = |lines: &[(String, String)], field: &str| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut seen = BTreeSet::new();
    let mut changes = Vec::new();
    for (field, _) in old.iter().chain(new) {
        if !seen.insert(field.clone()) {
            continue;
        }
        let (a, b) = (values(old, field), values(new, field));
        if a == b {
            continue;
        }
        if a.len() == 1 && b.len() == 1 {
            changes.push(Change {
                field: field.clone(),
                from: a.into_iter().next(),
                to: b.into_iter().next(),
            });
            continue;
        }
        changes.extend(a.difference(&b).map(|v| Change {
            field: field.clone(),
            from: Some(v.clone()),
            to: None,
        }));
        changes.extend(b.difference(&a).map(|v| Change {
            field: field.clone(),
            from: None,
            to: Some(v.clone()),
        }));
    }
    changes
}

/// A value on one line: one with a newline or another control character is shown
/// quoted and escaped, so it cannot fake further lines of a diff.
fn shown(value: &str) -> String {
    if value.chars().any(char::is_control) {
        serde_json::to_string(value).expect("a string serialises")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::ContainerState;

    fn app(env: &[(&str, &str)], ports: &[&str]) -> Settings {
        Settings {
            image: "example/shop:v1".into(),
            network: "shop-net".into(),
            ports: {
                let mut p: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
                p.sort();
                p
            },
            mount: None,
            env_file: Some("/srv/secrets.env".into()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            command: Vec::new(),
            run: RunSettings::default(),
            entrypoint: Vec::new(),
            restart: None,
        }
    }

    fn container(labels: &[(&str, &str)]) -> Container {
        Container {
            name: "gem-1".into(),
            id: String::new(),
            image: "example/shop:v1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: ContainerState::Running,
            health: None,
            ports: Vec::new(),
            created: None,
        }
    }

    #[test]
    fn an_env_value_change_names_the_key_and_both_values() {
        let old = app(&[("LOG_LEVEL", "debug"), ("PGUSER", "app")], &["80:8080"]);
        let new = app(&[("LOG_LEVEL", "info"), ("PGUSER", "app")], &["80:8080"]);
        let changes = old.changes(&new);
        assert_eq!(
            changes,
            vec![Change {
                field: "env.LOG_LEVEL".into(),
                from: Some("debug".into()),
                to: Some("info".into()),
            }]
        );
        assert_eq!(
            changes[0].to_string(),
            "env.LOG_LEVEL changed: debug → info"
        );
    }

    #[test]
    fn a_reordered_port_list_is_no_change() {
        let config = |ports: &[&str]| ContainerConfig {
            name: "gem-1".into(),
            role: crate::desired::Role::App,
            generation: 1,
            image: "example/shop:v1".into(),
            env: BTreeMap::new(),
            env_file: None,
            network: "shop-net".into(),
            ports: ports.iter().map(|p| p.to_string()).collect(),
            data_mount: None,
            command: Vec::new(),
            run: crate::desired::RunConfig::default(),
            service: None,
        };
        let a = Settings::of(&config(&["80:8080", "127.0.0.1:7000:7000"]));
        let b = Settings::of(&config(&["127.0.0.1:7000:7000", "80:8080"]));
        assert_eq!(a, b);
        assert_eq!(a.label(), b.label());
        assert!(a.changes(&b).is_empty());
    }

    #[test]
    fn ports_compare_as_a_set_one_added_one_removed() {
        let old = app(&[], &["80:8080", "127.0.0.1:7000:7000"]);
        let new = app(&[], &["127.0.0.1:7000:7000", "443:8443"]);
        let shown: Vec<String> = old.changes(&new).iter().map(Change::to_string).collect();
        assert_eq!(shown, ["port removed: 80:8080", "port added: 443:8443"]);
    }

    #[test]
    fn added_and_removed_env_keys_are_listed() {
        let old = app(&[("A", "1")], &[]);
        let new = app(&[("B", "2")], &[]);
        let shown: Vec<String> = old.changes(&new).iter().map(Change::to_string).collect();
        assert_eq!(shown, ["env.A removed: 1", "env.B added: 2"]);
    }

    #[test]
    fn the_text_has_one_stable_line_per_setting() {
        let s = Settings {
            mount: Some("/srv/shop/1/pgdata:/var/lib/postgresql/data".into()),
            ..app(
                &[("PGUSER", "app"), ("NOTE", "two\nlines")],
                &["b:1", "a:1"],
            )
        };
        assert_eq!(
            s.text(),
            "image: example/shop:v1\nnetwork: shop-net\nport: a:1\nport: b:1\n\
             mount: /srv/shop/1/pgdata:/var/lib/postgresql/data\n\
             env_file: /srv/secrets.env\nenv.NOTE: \"two\\nlines\"\nenv.PGUSER: app\n"
        );
    }

    #[test]
    fn the_label_round_trips_and_old_or_broken_labels_are_told_apart() {
        let s = app(&[("PGUSER", "app")], &["80:8080"]);
        let made = container(&[(labels::SETTINGS, &s.label())]);
        assert_eq!(Settings::recorded(&made), Ok(s));
        assert_eq!(
            Settings::recorded(&container(&[])),
            Err(Unrecorded::Missing)
        );
        assert!(matches!(
            Settings::recorded(&container(&[(labels::SETTINGS, "{bad")])),
            Err(Unrecorded::Unreadable(_))
        ));
    }

    #[test]
    fn run_settings_are_recorded_and_compared_field_by_field() {
        let spec: crate::spec::RunSpec = serde_yaml::from_str(
            "user: \"1000\"\nmemory: 512m\ncpus: 1.5\nvolumes: [\"/srv/up:/up\"]\n\
             labels: { team: shop }\nlog: { driver: local, options: { max-size: 10m } }\n",
        )
        .unwrap();
        let mut made = app(&[], &[]);
        made.run = Settings::of(&ContainerConfig {
            run: crate::desired::RunConfig::of(&spec),
            ..crate::desired::app(&crate::spec::Spec::parse(
                std::path::Path::new("s.yaml"),
                "project: p\ngeneration: 1\nstorage: /srv/p\napp: { image: \"a:1\" }\ndb: { image: \"postgres:15\" }\n",
            )
            .unwrap(), 1)
        })
        .run;
        let back: Settings = serde_json::from_str(&made.label()).unwrap();
        assert_eq!(back, made, "the label reads back");
        let plain = app(&[], &[]);
        let fields: Vec<String> = plain.changes(&made).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "user",
                "memory",
                "cpus",
                "log.driver",
                "volume",
                "label.team",
                "log.max-size"
            ]
        );
        assert!(
            made.text().contains("memory: 536870912 bytes"),
            "{}",
            made.text()
        );
        // A label written before these settings existed still reads.
        let old: Settings = serde_json::from_str(&plain.label()).unwrap();
        assert!(old.run.is_empty());
    }
}
