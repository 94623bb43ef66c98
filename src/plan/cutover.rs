//! The cut-over, the same for every kind of plan once the target's data is ready:
//! only the target's app runs, health-checked on 127.0.0.1 before it is given the
//! public ports — or, with a front door, before the front switches to it —, the
//! target is recorded live, and only its database keeps running.

use crate::desired::{self, Role};
use crate::labels;

use super::Action;
use super::builder::Builder;
use super::front;
use super::recognise::{Gen, Host};

/// Puts generation `target`'s app in front and stops every other generation.
pub(super) fn cut_over(b: &mut Builder, host: &Host, tgen: &Gen, target: u64, live: Option<u64>) {
    b.stop_other_apps(host, target, "only one generation's app may be live");
    if b.spec.front.is_some() {
        front::cut_over(b, host, tgen, target);
    } else {
        bring_up_app(b, tgen, target);
    }
    if live != Some(target) {
        b.push(
            Action::SetLive { generation: target },
            match live {
                Some(l) => format!("generation {target} replaces generation {l}"),
                None => format!("generation {target} is the first live generation"),
            },
        );
    }
    b.stop_other_dbs(host, target);
}

/// Without a front: the target's app as found decides: none (or data just made) is probed and exposed;
/// a probe left running is checked and exposed; a stopped probe is replaced; a
/// stopped public app is restarted; a running public app is left alone.
fn bring_up_app(b: &mut Builder, tgen: &Gen, target: u64) {
    let app_name = desired::container_name(b.spec, Role::App, target);
    match tgen.app.filter(|_| tgen.ready()) {
        None => probe_and_expose(b, target, &app_name),
        Some(app) if !app.public() => {
            if app.up() {
                b.check(target, "resume: the app was being health-checked");
                expose(b, target, &app_name);
            } else {
                b.push(
                    Action::RemoveContainer {
                        generation: target,
                        container: app_name.clone(),
                        role: labels::ROLE_APP.into(),
                    },
                    "a stopped health-check container from an interrupted apply",
                );
                probe_and_expose(b, target, &app_name);
            }
        }
        Some(app) if !app.up() => {
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

fn probe_and_expose(b: &mut Builder, target: u64, app_name: &str) {
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
    expose(b, target, app_name);
}

fn expose(b: &mut Builder, target: u64, app_name: &str) {
    b.push(
        Action::ExposeApp {
            generation: target,
            container: app_name.to_string(),
        },
        "healthy: give it the public ports",
    );
    b.check(target, "check again on the public ports");
}
