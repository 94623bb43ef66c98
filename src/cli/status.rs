//! `gemctl status`: prints the [`Status`] that `crate::status` builds, as a table
//! for humans or as JSON. The verdict (in sync, pending, refused) is its exit code.

use std::fmt::Write;
use std::path::PathBuf;

use clap::Args;

use super::table::{self, left, right};
use super::{Output, json, print, runtime};
use crate::error::{Error, exit};
use crate::plan::{self, PlanOptions};
use crate::spec::Spec;
use crate::status::{Status, human_bytes};

const EXIT_CODES_STATUS: &str = "\
Exit codes:
  0  in sync with the spec
  2  not in sync: `gemctl apply` would act (or the desired generation is
     held back after a failure)
  3  unrecognised containers or an unsafe state: gemctl would refuse to act
  1  any other error (bad spec or arguments, engine unreachable or on
     another machine)";

/// Show the generations on the host and whether it is in sync with the spec.
///
/// One row per generation: its status (live; last good when no app of it
/// runs; retained, rolled back from, failed, incomplete, pending), app and db
/// state and health, image, creation time, data directory and size; and a
/// line when no app is running. Names the engine it read: the one `docker ps`
/// would use (DOCKER_HOST, DOCKER_CONTEXT, `docker context use`), which must be
/// on this machine.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_STATUS)]
pub(super) struct StatusArgs {
    /// The spec file.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(super) fn run(args: StatusArgs) -> Result<u8, Error> {
    let spec = Spec::load_with(&args.file, crate::spec::EnvFiles::Skip)?;
    // Observed here rather than through `observe_engine`, to keep the connection's
    // endpoint: the status names the engine it was read from.
    let (observation, engine) = runtime()?.block_on(async {
        let docker = crate::docker::Docker::connect().await?;
        let observation = crate::observe::observe(&docker, &spec).await?;
        Ok::<_, Error>((observation, docker.endpoint().clone()))
    })?;
    let planned = plan::plan(
        &spec,
        &observation.observed,
        &observation.history,
        PlanOptions::default(),
    );
    let mut status = crate::status::status(&spec, &observation, &planned);
    status.engine = Some(engine);
    // A report that cannot be read only costs this line.
    status.last_copy = crate::report::list(&spec.storage)
        .ok()
        .and_then(|reports| reports.into_iter().find_map(|r| r.copy));
    match args.output {
        Output::Json => print(&json(&status))?,
        Output::Text => print(&render(&status))?,
    }
    Ok(match status.sync {
        "in_sync" => exit::OK,
        "refused" => exit::REFUSED,
        _ => exit::CHANGES,
    })
}

/// The status for humans: the verdict, what serves, pins and holds, then one row
/// per generation.
fn render(s: &Status) -> String {
    let mut out = String::new();
    let live = s.live.map_or("none".to_string(), |l| l.to_string());
    let head = match s.sync {
        "in_sync" => format!("in sync: generation {live} live"),
        "refused" => "NOT in sync: gemctl would refuse to act (see below)".to_string(),
        _ => format!(
            "NOT in sync: live generation {live}, spec wants {}; `gemctl apply` has {} step(s) to do",
            s.desired, s.pending_steps
        ),
    };
    let _ = writeln!(out, "project {}: {head}", s.project);
    if let Some(e) = &s.engine {
        let _ = writeln!(out, "engine: {e}");
    }
    if let Some(h) = &s.locked_by {
        let _ = writeln!(out, "locked: another gemctl is working on it: {h}");
    }
    for (kind, h) in &s.throwaways_in_use {
        let _ = writeln!(out, "in use: the {kind} (a throwaway copy), by {h}");
    }
    match (s.serving, s.live) {
        (Some(g), Some(l)) if g != l => {
            let _ = writeln!(
                out,
                "serving: generation {g}'s app, while generation {l} is recorded live"
            );
        }
        (None, Some(l)) => {
            let _ = writeln!(out, "no app running; generation {l} is the last good one");
        }
        _ => {}
    }
    if let Some(f) = &s.front {
        let state = f.container.as_ref().map_or_else(
            || "not on this host".to_string(),
            |c| format!("{} {}", c.name, c.state),
        );
        let to = f.forwards_to.map_or("nowhere yet".to_string(), |g| {
            format!("generation {g}'s app")
        });
        let _ = writeln!(out, "front: {state}, forwarding to {to}");
        if let Some(m) = &f.maintenance {
            let _ = writeln!(
                out,
                "maintenance: on since {} ({:?}); `gemctl maintenance off` ends it",
                m.since, m.message
            );
        }
    }
    if let Some(p) = &s.preview {
        let line = match &p.record {
            Some(r) => format!(
                "preview: generation {} on {}, copied from generation {} at {} ({} ago){}",
                r.generation,
                if r.ports.is_empty() {
                    "-".to_string()
                } else {
                    r.ports.join(", ")
                },
                r.from,
                r.from_lsn,
                humantime::format_duration(std::time::Duration::from_secs(
                    p.age_seconds.unwrap_or_default()
                )),
                match r.healthy {
                    Some(true) => ", healthy".to_string(),
                    Some(false) => ", FAILED its checks".to_string(),
                    None => ", being made".to_string(),
                }
            ),
            None => {
                "preview: incomplete (no record): `gemctl preview --discard` removes it".to_string()
            }
        };
        let _ = writeln!(out, "{line}");
    }
    if let Some(p) = &s.pinned {
        let _ = writeln!(out, "pinned: {p}");
    }
    if let Some(h) = &s.hold {
        let _ = writeln!(out, "held: {h}");
    }
    if let Some(c) = &s.last_copy {
        let mut line = format!("last upgrade: {}", super::history::copy_text(Some(c)));
        if let Some(b) = c.bytes {
            line.push_str(&format!(", {} copied", human_bytes(b)));
        }
        if let Some(l) = c.lag_bytes {
            line.push_str(&format!(", {} behind at the freeze", human_bytes(l)));
        }
        let _ = writeln!(out, "{line}");
    }
    if s.generations.is_empty() {
        let _ = writeln!(out, "no generations on this host");
    } else {
        let rows = s
            .generations
            .iter()
            .map(|g| {
                let app = g.app.as_ref().map_or("-".to_string(), |a| {
                    let mut t = a.state.clone();
                    if let Some(e) = &a.exposure {
                        t.push_str(&format!(" ({e})"));
                    }
                    if let Some(h) = &a.health {
                        t.push_str(&format!(" {h}"));
                    }
                    t
                });
                let data = match (&g.data_dir, g.data_bytes, g.shares_db_of) {
                    (_, _, Some(db)) => format!("generation {db}'s (db.copy: none)"),
                    (Some(d), Some(b), None) => format!("{d} ({})", human_bytes(b)),
                    _ => "-".to_string(),
                };
                vec![
                    g.generation.to_string(),
                    g.status.clone(),
                    app,
                    g.db.as_ref().map_or("-".to_string(), |d| d.state.clone()),
                    g.app.as_ref().map_or("-", |a| a.image.as_str()).to_string(),
                    g.app
                        .as_ref()
                        .and_then(|a| a.created.as_deref())
                        .unwrap_or("-")
                        .to_string(),
                    g.services_summary(),
                    data,
                ]
            })
            .collect();
        let columns = [
            right("GEN", 4),
            left("STATUS", 16),
            left("APP", 22),
            left("DB", 12),
            left("IMAGE", 28),
            left("CREATED", 20),
            left("SERVICES", 16),
            left("DATA", 0),
        ];
        let _ = write!(out, "\n{}", table::render(&columns, rows));
    }
    if let Some(r) = &s.refusal {
        let _ = write!(out, "\n{r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ContainerStatus, GenerationStatus};

    fn generation(n: u64, status: &str, image: &str) -> GenerationStatus {
        let container = |role: &str, image: &str| ContainerStatus {
            name: format!("shop-{role}-{n}"),
            state: "running".into(),
            health: Some("healthy".into()),
            exposure: (role == "app").then(|| "public".into()),
            image: image.into(),
            created: Some("2026-11-02T10:00:00Z".into()),
        };
        GenerationStatus {
            generation: n,
            status: status.into(),
            app: Some(container("app", image)),
            db: Some(container("db", "postgres:15")),
            shares_db_of: None,
            services: Vec::new(),
            data_dir: Some(format!("/srv/shop/{n}/pgdata")),
            data_bytes: Some(47_812_345),
        }
    }

    /// The columns of a line, found where the header's titles start.
    fn cells<'a>(line: &'a str, starts: &[usize]) -> Vec<&'a str> {
        starts
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let end = starts.get(i + 1).copied().unwrap_or(line.len());
                &line[s.min(line.len())..end.min(line.len())]
            })
            .collect()
    }

    #[test]
    fn a_long_image_name_keeps_the_status_table_aligned() {
        let long = format!("registry.example.com/team/{}:v2", "x".repeat(31));
        assert_eq!(long.len(), 60);
        let s = Status {
            project: "shop".into(),
            engine: None,
            desired: 2,
            live: Some(2),
            serving: Some(2),
            sync: "in_sync",
            pending_steps: 0,
            pinned: None,
            hold: None,
            refusal: None,
            generations: vec![
                generation(2, "live", &long),
                generation(1, "retained", "example/shop:v1"),
            ],
            last_copy: None,
            front: None,
            locked_by: None,
            throwaways_in_use: Default::default(),
            preview: None,
        };
        let text = render(&s);
        let lines: Vec<&str> = text.lines().skip_while(|l| !l.contains("GEN")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header = lines[0];
        let titles = [
            "STATUS", "APP", "DB", "IMAGE", "CREATED", "SERVICES", "DATA",
        ];
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                titles
                    .iter()
                    .map(|t| header.find(&format!("  {t}")).unwrap() + 2),
            )
            .collect();
        for line in &lines[1..] {
            let row = cells(line, &starts);
            // Every cell sits under its title: it starts with its value and is
            // separated from the next by at least two spaces.
            for (i, cell) in row.iter().enumerate().skip(1) {
                assert!(
                    !cell.starts_with(' '),
                    "column {i} starts late: {line:?}\n{text}"
                );
            }
            for (i, cell) in row[..row.len() - 1].iter().enumerate() {
                assert!(
                    cell.ends_with("  "),
                    "column {i} runs into the next: {line:?}\n{text}"
                );
            }
            assert_eq!(row[0].trim(), if line == &lines[1] { "2" } else { "1" });
        }
        assert_eq!(cells(lines[1], &starts)[4].trim(), long, "{text}");
        assert_eq!(cells(lines[2], &starts)[4].trim(), "example/shop:v1");
        assert_eq!(cells(lines[1], &starts)[5].trim(), "2026-11-02T10:00:00Z");
        assert_eq!(cells(lines[1], &starts)[6].trim(), "-");
        assert_eq!(cells(lines[1], &starts)[7], "/srv/shop/2/pgdata (47.8 MB)");
    }
}
