//! The labels gemctl puts on every container it makes, and nothing else.
//!
//! A container is recognised as gemctl's only when its labels *and* its name agree:
//! `io.gemctl.project=<project>`, `io.gemctl.role=app|db|service|copy`,
//! `io.gemctl.generation=<n>`, and the name `<app.name>-<n>`, `<db.name>-<n>` or
//! `<project>-copy-<n>`; a service's containers also carry
//! `io.gemctl.service=<name>` and `io.gemctl.replica=<i>`, named `<name>-<n>` (one
//! replica) or `<name>-<n>-<i>`; the front door is `io.gemctl.role=front`, named
//! `<project>-front`, with no generation. `io.gemctl.spec-hash` fingerprints what the spec asked of
//! the container (image, environment, ports, network, mounts; never secret values),
//! so a spec changed without bumping `generation` is caught; `io.gemctl.settings`
//! records those settings themselves as compact JSON (see [`crate::settings`]), so
//! `diff` and a refusal can say which field changed. `io.gemctl.exposure`
//! tells whether an app container has its public ports (`public`) or only its
//! health ports on 127.0.0.1 (`probe`).

/// The project the container belongs to.
pub const PROJECT: &str = "io.gemctl.project";
/// `app`, `db` or `copy` (the one-shot data copy).
pub const ROLE: &str = "io.gemctl.role";
/// The generation number.
pub const GENERATION: &str = "io.gemctl.generation";
/// Fingerprint of what the spec asked of this container.
pub const SPEC_HASH: &str = "io.gemctl.spec-hash";
/// The non-secret settings the container was made from, compact JSON.
pub const SETTINGS: &str = "io.gemctl.settings";
/// `probe` or `public` (app containers only).
pub const EXPOSURE: &str = "io.gemctl.exposure";
/// The service a `service` container runs (its name in the spec's `services:`).
pub const SERVICE: &str = "io.gemctl.service";
/// Which of a service's replicas it is, from 1.
pub const REPLICA: &str = "io.gemctl.replica";

/// Value of [`ROLE`] for the app container.
pub const ROLE_APP: &str = "app";
/// Value of [`ROLE`] for the database container.
pub const ROLE_DB: &str = "db";
/// Value of [`ROLE`] for the front door, `<project>-front` (no generation).
pub const ROLE_FRONT: &str = "front";
/// Value of [`ROLE`] for a container of one of the spec's `services:`.
pub const ROLE_SERVICE: &str = "service";
/// Value of [`ROLE`] for a throwaway copy's containers (a preview, a deploy
/// check, a restore drill): `<project>-preview-*`, `<project>-check-*`,
/// `<project>-drill-*`; never live, retained or a stranger.
pub const ROLE_THROWAWAY: &str = "throwaway";
/// Which throwaway copy: `preview`, `check` or `drill`.
pub const THROWAWAY: &str = "io.gemctl.throwaway";
/// Value of [`ROLE`] for a one-shot copy container.
pub const ROLE_COPY: &str = "copy";

/// Value of [`EXPOSURE`] while the app is health-checked on 127.0.0.1 only.
pub const EXPOSURE_PROBE: &str = "probe";
/// Value of [`EXPOSURE`] once the app has its public ports.
pub const EXPOSURE_PUBLIC: &str = "public";
