//! The front door in a plan. The front is made (or started, or made again when the
//! spec's `front:` changed) before anything else, so a front that cannot start
//! stops the apply before anything stops; an app behind a front is never recreated
//! to change its ports: it runs as it was health-checked, and the front switches to
//! it. Without a `front:`, a front left from an earlier spec is removed and the app
//! takes its public ports again.

use crate::desired::{self, Role};
use crate::front;
use crate::labels;

use super::Action;
use super::builder::Builder;
use super::recognise::{Gen, Host};

/// Whether an app of another generation still holds public ports of its own (the
/// host ran without a front): the front can only bind them once it stopped.
fn waits_for_public_apps(b: &Builder, host: &Host) -> bool {
    b.spec.front.is_some()
        && host.gens.values().any(|g| {
            g.app.is_some_and(|a| {
                a.up()
                    && a.c.labels.get(labels::EXPOSURE).map(String::as_str)
                        == Some(labels::EXPOSURE_PUBLIC)
            })
        })
}

/// The front as the spec wants it, at the start of the plan (unless public apps of
/// a host without a front still hold its ports).
pub(super) fn at_start(b: &mut Builder, host: &Host) {
    if !waits_for_public_apps(b, host) {
        ensure(b, host);
    }
}

/// The front, once the cut-over stopped the apps that held its ports.
pub(super) fn after_public_apps_stopped(b: &mut Builder, host: &Host) {
    if waits_for_public_apps(b, host) {
        ensure(b, host);
    }
}

fn ensure(b: &mut Builder, host: &Host) {
    let container = front::container_name(b.spec);
    match (&b.spec.front, host.front) {
        (None, None) => {}
        (None, Some(_)) => b.push(
            Action::RemoveFront { container },
            "the spec has no `front:`: the app takes its public ports again",
        ),
        (Some(_), None) => b.push(
            Action::CreateFront {
                container,
                replace: false,
            },
            "the spec's `front:` owns the public ports",
        ),
        (Some(f), Some(k)) if k.hash() != Some(front::spec_hash(f).as_str()) => b.push(
            Action::CreateFront {
                container,
                replace: true,
            },
            "the spec's `front:` changed",
        ),
        (Some(_), Some(k)) if !k.up() => b.push(
            Action::StartFront { container },
            format!("the front is {}", k.c.state),
        ),
        (Some(_), Some(_)) => {}
    }
}

/// The target's app behind the front, as found: none (or data just made) is made
/// and health-checked, then switched to; one the front does not forward to yet is
/// (re)started if stopped, checked and switched to; one it forwards to is
/// restarted if stopped, or left alone.
pub(super) fn bring_up_app(b: &mut Builder, host: &Host, tgen: &Gen, target: u64) {
    let container = desired::container_name(b.spec, Role::App, target);
    match tgen.app.filter(|_| tgen.ready()) {
        None => {
            b.push(
                Action::CreateAppProbe {
                    generation: target,
                    container: container.clone(),
                },
                "health-check the new app before the front sends it traffic",
            );
            switch_after_check(b, host, target, container);
        }
        Some(app) if !app.public() => {
            if !app.up() {
                b.push(
                    Action::StartApp {
                        generation: target,
                        container: container.clone(),
                    },
                    format!("the app is {}", app.c.state),
                );
            }
            switch_after_check(b, host, target, container);
        }
        Some(app) if !app.up() => {
            b.push(
                Action::StartApp {
                    generation: target,
                    container,
                },
                format!("the app the front forwards to is {}", app.c.state),
            );
            b.check(target, "the restarted app must pass its health checks");
        }
        Some(_) => {}
    }
}

fn switch_after_check(b: &mut Builder, host: &Host, target: u64, container: String) {
    if !host.front_names(target) {
        b.push(
            Action::PrepareFront {
                generation: target,
                container: container.clone(),
            },
            "the front learns the new app's address while it is checked",
        );
    }
    b.check(
        target,
        "the app must pass every health check before the front sends it traffic",
    );
    b.push(
        Action::SwitchFront {
            generation: target,
            container,
        },
        "healthy: new and held requests go to it",
    );
}
