//! The cut-over, the same for every kind of plan once the target's data is ready:
//! only the target's app runs, health-checked on 127.0.0.1 before it is given the
//! public ports — or, with a front door, before the front switches to it —, the
//! target is recorded live, and only its database keeps running.

use crate::desired::{self, Role};
use crate::labels;
use crate::spec::Spec;

use super::Action;
use super::builder::Builder;
use super::front;
use super::recognise::{Gen, Host};

/// Puts generation `target`'s app in front and stops every other generation.
/// `target_db` is the generation whose database the target runs on.
///
/// When the live generation runs on that same database (an app-only release, or
/// going back over one), the old app serves until the new one is healthy: behind a
/// front, the front switches and the old app's open requests finish before it
/// stops; without one, the old app stops just before the new one takes the ports.
pub(super) fn cut_over(
    b: &mut Builder,
    host: &Host,
    tgen: &Gen,
    target: u64,
    target_db: u64,
    live: Option<u64>,
) {
    let beside = live.filter(|l| {
        *l != target && host.db_gen(*l) == target_db && !front::waits_for_public_apps(b, host)
    });
    if beside.is_none() {
        b.stop_other_apps(host, target, "only one generation's app may be live");
    } else {
        // Services on another database than the target's stop now; those on its
        // database stop with the old app.
        b.stop_other_services(host, target, |n| host.db_gen(n) != target_db);
    }
    super::services::bring_up(b, tgen, target, target_db, live);
    if b.spec.front.is_some() {
        front::cut_over(b, host, tgen, target);
        // Also when a run killed after the switch left the old app running.
        if let Some(l) = beside
            && b.fronted == Some(target)
            && host.generation(l).app.is_some_and(|a| a.up())
        {
            b.push(
                Action::DrainFront { generation: l },
                "requests already sent to it finish before it stops",
            );
        }
    } else {
        bring_up_app(b, host, tgen, target);
    }
    b.stop_other_apps(
        host,
        target,
        "the new generation serves: only one generation's app may be live",
    );
    if live != Some(target) {
        b.push(
            Action::SetLive { generation: target },
            match live {
                Some(l) => format!("generation {target} replaces generation {l}"),
                None => format!("generation {target} is the first live generation"),
            },
        );
    }
    b.stop_other_dbs(host, target_db);
}

/// The plan's note when the target runs on the live generation's database.
pub(super) fn beside_note(spec: &Spec, target: u64, live: u64, db: u64) -> String {
    format!(
        "code only: generations {live} and {target} run on the same database ({}), so no \
         write is left behind either way; {}",
        desired::container_name(spec, Role::Db, db),
        if spec.front.is_some() {
            "the new app starts beside the old one and the front switches once it is healthy"
        } else {
            "without a front, the public ports pass from one app to the other with a short \
             gap (a container restart)"
        }
    )
}

/// Without a front: the target's app as found decides: none (or data just made) is probed and exposed;
/// a probe left running is checked and exposed; a stopped probe is replaced; a
/// stopped public app is restarted; a running public app is left alone.
fn bring_up_app(b: &mut Builder, host: &Host, tgen: &Gen, target: u64) {
    let app_name = desired::container_name(b.spec, Role::App, target);
    match tgen.app.filter(|_| tgen.ready()) {
        None => probe_and_expose(b, host, target, &app_name),
        Some(app) if !app.public() => {
            if app.up() {
                b.check(target, "resume: the app was being health-checked");
                expose(b, host, target, &app_name);
            } else {
                b.push(
                    Action::RemoveContainer {
                        generation: target,
                        container: app_name.clone(),
                        role: labels::ROLE_APP.into(),
                    },
                    "a stopped health-check container from an interrupted apply",
                );
                probe_and_expose(b, host, target, &app_name);
            }
        }
        Some(app) if !app.up() => {
            b.stop_other_apps(host, target, "the public ports pass to this generation");
            b.push(
                Action::StartApp {
                    generation: target,
                    container: app_name,
                },
                format!("the app is {}", app.c.state),
            );
            b.check(target, "the restarted app must pass its health checks");
        }
        Some(_) => {}
    }
}

fn probe_and_expose(b: &mut Builder, host: &Host, target: u64, app_name: &str) {
    b.push(
        Action::CreateAppProbe {
            generation: target,
            container: app_name.to_string(),
        },
        "health-check the new app before it takes traffic",
    );
    b.check(
        target,
        "the app must pass every health check before it is exposed",
    );
    expose(b, host, target, app_name);
}

fn expose(b: &mut Builder, host: &Host, target: u64, app_name: &str) {
    b.stop_other_apps(host, target, "the public ports pass to this generation");
    b.push(
        Action::ExposeApp {
            generation: target,
            container: app_name.to_string(),
        },
        "healthy: give it the public ports",
    );
    b.check(target, "check again on the public ports");
}
