//! The target's services (the spec's `services:`: workers, a cache…), brought up
//! and checked before its app takes traffic, so that a generation goes live only
//! when all of it passes; and a spec change to them without a new generation.
//!
//! The other generations' services stop with their apps (`Builder::stop_other_apps`,
//! services first) and go with their containers (`Builder::remove_containers`).

use std::collections::BTreeMap;

use crate::desired;
use crate::spec::Spec;

use super::Action;
use super::Problem;
use super::builder::Builder;
use super::recognise::{Gen, Host, Known};

/// Creates the target's missing replicas and starts its stopped ones, service by
/// service in the order they depend on each other, each followed by its check;
/// until the target is live every service is checked, running or not. A target
/// that runs as it was made (held back, rolled back to) keeps the services it has.
pub(super) fn bring_up(
    b: &mut Builder,
    tgen: &Gen,
    target: u64,
    target_db: u64,
    live: Option<u64>,
) {
    let check_all = live != Some(target);
    let have: BTreeMap<&str, Known> = tgen
        .services
        .iter()
        .filter(|k| !b.removes(&k.c.name))
        .map(|k| (k.c.name.as_str(), *k))
        .collect();
    // (service, its replicas' names as wanted) in start order.
    let groups: Vec<(String, Vec<String>)> = if b.as_made {
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in have.values() {
            by_service
                .entry(k.service().unwrap_or_default().to_string())
                .or_default()
                .push(k.c.name.clone());
        }
        let order = b.spec.service_order().unwrap_or_default();
        let mut groups: Vec<(String, Vec<String>)> = order
            .iter()
            .filter_map(|s| Some((s.clone(), by_service.remove(s)?)))
            .collect();
        groups.extend(by_service);
        groups
    } else {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for want in desired::services_on(b.spec, target, target_db) {
            let service = want.service.expect("a service's config").name;
            match groups.last_mut() {
                Some((s, names)) if *s == service => names.push(want.name),
                _ => groups.push((service, vec![want.name])),
            }
        }
        groups
    };
    for (service, names) in groups {
        let mut touched = false;
        for name in &names {
            match have.get(name.as_str()) {
                None => {
                    b.create_service(
                        target,
                        &service,
                        name,
                        "generation's services run beside its app, checked before it goes live",
                    );
                    touched = true;
                }
                Some(k) if !k.up() => {
                    b.start_service(target, &service, name, format!("it is {}", k.c.state));
                    touched = true;
                }
                Some(_) => {}
            }
        }
        if touched || check_all {
            b.push(
                Action::CheckService {
                    generation: target,
                    service: service.clone(),
                },
                "every service must pass its checks before the generation goes live",
            );
        }
    }
}

/// The target's service containers made from another spec than today's, or that
/// today's spec no longer has (a service or a replica removed), without a new
/// generation number.
pub(super) fn spec_drift(
    spec: &Spec,
    host: &Host,
    target: u64,
    tgen: &Gen,
    next: u64,
) -> Vec<Problem> {
    let wants = desired::services_on(spec, target, host.db_gen(target));
    let fix = format!(
        "bump `generation` to {next} to deploy the change as a new generation, or revert \
         the spec to what generation {target} was made from"
    );
    let mut problems = Vec::new();
    for k in &tgen.services {
        let service = k.service().unwrap_or_default();
        let seen = match wants.iter().find(|w| w.name == k.c.name) {
            Some(want) if desired::made_as(spec, want, k.hash()) => continue,
            Some(want) => format!(
                "{} (service {service}) was made from a different spec for generation \
                 {target}: {}",
                k.c.name,
                super::repair::what_changed(k.c, want)
            ),
            None if spec.services.contains_key(service) => format!(
                "{} is a replica of service {service} that the spec no longer asks for \
                 (replicas: {})",
                k.c.name, spec.services[service].replicas
            ),
            None => format!(
                "{} runs service {service}, which the spec no longer has",
                k.c.name
            ),
        };
        problems.push(Problem {
            container: Some(k.c.name.clone()),
            seen,
            fix: fix.clone(),
        });
    }
    problems
}
