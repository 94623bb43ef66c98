//! The spec the real-engine tests and benchmarks deploy, written in one place: the
//! fixture app (`gemctl-test/app:TAG`) beside the test PostgreSQL, both never
//! pulled, with their passwords in `secrets.env` beside the spec. Included by
//! `tests/real/mod.rs` and, by path, by `benches/`. Not for a test's one-off spec
//! that exercises a single field: that test writes its own few lines.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};

/// Ports handed out so far by [`free_port`] in this process.
#[allow(dead_code)] // not every bench that includes this file publishes ports
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A host port for a test's public app ports, free when asked for.
///
/// Taken from 20000–31999, below the kernel's ephemeral range (32768 and up):
/// the engine publishes every probe's health ports on ephemeral ports, so a port
/// the OS handed out as "free" (`bind(0)`) could be given to another test's probe
/// a moment later, and this test's app would then find its public port taken.
/// Each process starts at its own offset and never hands a port out twice.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = u32::from(NEXT_PORT.fetch_add(1, Ordering::SeqCst));
        assert!(
            n < SPAN,
            "no free test port left in {BASE}..{}",
            BASE + SPAN
        );
        let port = (BASE + (start + n) % SPAN) as u16;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok();
        if free {
            return port;
        }
    }
}

/// The test PostgreSQL image (`scripts/build-images`).
pub const PG_IMAGE: &str = "gemctl-test/postgres:15";

/// The parts of the spec that tests and benchmarks vary.
pub struct SpecTemplate<'a> {
    /// The project's name, also the stem of its containers' names.
    pub name: &'a str,
    pub generation: u64,
    /// The fixture app's tag: `1`, `2`, `broken`, `slow`.
    pub tag: &'a str,
    /// `retain`, when not the default.
    pub retain: Option<u32>,
    /// The `scope` line.
    pub scope: &'a str,
    /// The app's `ports`, inside the brackets.
    pub ports: &'a str,
    /// The app's `health` items, each line indented by four spaces, ending in a newline.
    pub health: &'a str,
    /// Top-level YAML appended (`notify`, `backup`…).
    pub extra: &'a str,
}

impl SpecTemplate<'_> {
    /// The spec's text, its db on [`PG_IMAGE`].
    pub fn text(&self) -> String {
        self.text_with_db_image(PG_IMAGE)
    }

    /// The spec's text, its db on `db_image`.
    pub fn text_with_db_image(&self, db_image: &str) -> String {
        let SpecTemplate {
            name,
            generation,
            tag,
            retain,
            scope,
            ports,
            health,
            extra,
        } = self;
        let retain = retain.map_or(String::new(), |r| format!("retain: {r}\n"));
        format!(
            r#"project: {name}
generation: {generation}
{retain}storage: storage
pull: never
{scope}
app:
  name: {name}-gem
  image: gemctl-test/app:{tag}
  env: {{ PGUSER: app, PGDATABASE: app }}
  env_file: secrets.env
  ports: [{ports}]
  health:
{health}db:
  name: {name}-db
  image: {db_image}
  env: {{ POSTGRES_USER: app, POSTGRES_DB: app }}
  env_file: secrets.env
{extra}
"#
        )
    }
}

/// The passwords the spec names, in `secrets.env` in `dir` (beside the spec).
pub fn write_secrets(dir: &Path) {
    std::fs::write(
        dir.join("secrets.env"),
        "POSTGRES_PASSWORD=s3cret\nPGPASSWORD=s3cret\n",
    )
    .unwrap();
}
