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
use super::recognise::{Gen, Host, Known};

/// An app made with the public ports of its own (by a spec without a front).
fn own_ports(app: &Known) -> bool {
    app.c.labels.get(labels::EXPOSURE).map(String::as_str) == Some(labels::EXPOSURE_PUBLIC)
}

/// Whether an app still holds public ports of its own (the host ran without a
/// front): the front can only bind them once it is stopped or removed.
pub(super) fn waits_for_public_apps(b: &Builder, host: &Host) -> bool {
    b.spec.front.is_some()
        && host
            .gens
            .values()
            .any(|g| g.app.is_some_and(|a| a.up() && own_ports(&a)))
}

/// The front as the spec wants it, at the start of the plan (unless public apps of
/// a host without a front still hold its ports).
pub(super) fn at_start(b: &mut Builder, host: &Host) {
    if !waits_for_public_apps(b, host) {
        ensure(b, host);
    }
}

/// The cut-over behind the front, once the other apps are stopped: the target's
/// app, if it was made with public ports of its own, is made again behind the
/// front (its ports close until the front has them); then the front, if it had
/// to wait for those ports; then the target's app is brought up and switched to.
pub(super) fn cut_over(b: &mut Builder, host: &Host, tgen: &Gen, target: u64) {
    let mut tgen = tgen.clone();
    let remade = tgen
        .app
        .filter(|a| tgen.ready() && own_ports(a) && !b.removes(&a.c.name));
    if let Some(app) = remade {
        b.push(
            Action::RemoveContainer {
                generation: target,
                container: app.c.name.clone(),
                role: labels::ROLE_APP.into(),
            },
            "it publishes the public ports itself; behind the front it runs with its health \
             ports only (the ports close until the front takes them)",
        );
        tgen.app = None;
    }
    if waits_for_public_apps(b, host) {
        ensure(b, host);
    }
    bring_up_app(b, host, &tgen, target);
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
fn bring_up_app(b: &mut Builder, host: &Host, tgen: &Gen, target: u64) {
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

/// The live generation's app behind the front, while a streamed upgrade makes the
/// next one: an app an interrupted apply stopped is started, checked and switched
/// to again (an app with public ports of its own cannot run beside the front).
pub(super) fn serve_meanwhile(b: &mut Builder, host: &Host, source: &Gen, from: u64) {
    let Some(app) = source.app.filter(|a| !own_ports(a)) else {
        return;
    };
    if app.up() && b.fronted == Some(from) {
        return;
    }
    let container = app.c.name.clone();
    if app.up() {
        switch_after_check(b, host, from, container);
    } else {
        b.restart_app(
            from,
            &container,
            "the live generation's app serves while the new generation follows its data \
             (an interrupted apply stopped it)",
        );
        prepare(b, host, from, &container);
        switch(b, from, container);
    }
}

/// The front learns the app's address unless a slot names it already.
fn prepare(b: &mut Builder, host: &Host, target: u64, container: &str) {
    if !host.front_names(target) {
        b.push(
            Action::PrepareFront {
                generation: target,
                container: container.to_string(),
            },
            "the front learns the new app's address while it is checked",
        );
    }
}

fn switch_after_check(b: &mut Builder, host: &Host, target: u64, container: String) {
    prepare(b, host, target, &container);
    b.check(
        target,
        "the app must pass every health check before the front sends it traffic",
    );
    switch(b, target, container);
}

fn switch(b: &mut Builder, target: u64, container: String) {
    b.push(
        Action::SwitchFront {
            generation: target,
            container,
        },
        "healthy: new and held requests go to it",
    );
    b.fronted = Some(target);
}
