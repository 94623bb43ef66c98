//! Steps that touch the front door: make or start its container, point a slot at a
//! generation's app, switch traffic. Each change is written to the front's record
//! and configuration first (`state::write_front`), then made in the running
//! HAProxy through its runtime API, so a front that restarts at any moment comes
//! back forwarding where it was told last.

use std::time::{Duration, Instant};

use super::{Run, StepError};
use crate::copy::{self, OneShot};
use crate::desired::{self, Role};
use crate::engine::{CreateContainer, Engine, PortBinding};
use crate::error::Error;
use crate::front::{self, FrontState, Slot};
use crate::front_api;
use crate::port_holder;
use crate::spec::{FrontSpec, Spec};
use crate::state;

/// How long a started front gets to answer on its runtime API.
const FRONT_START: Duration = Duration::from_secs(20);
/// How long no connection may be open to an app about to stop before it stops.
const DRAIN_QUIET: Duration = Duration::from_millis(150);
/// How long the front gets to resolve a running app's name (it asks every 200 ms).
const RESOLVE: Duration = Duration::from_secs(10);

fn front_of(spec: &Spec) -> Result<&FrontSpec, StepError> {
    spec.front.as_ref().ok_or_else(|| {
        StepError::Failed(Error::Apply(
            "the plan has a front step but the spec has no `front:`".into(),
        ))
    })
}

impl<E: Engine> Run<'_, E> {
    /// The front's record, strictly: missing is a front that forwards nowhere yet.
    fn front_state(&self) -> Result<FrontState, StepError> {
        Ok(state::read_front(&self.spec.storage)?)
    }

    pub(super) async fn create_front(
        &mut self,
        container: &str,
        replace: bool,
    ) -> Result<(), StepError> {
        let spec = self.spec;
        let front = front_of(spec)?;
        let record = self.front_state()?;
        if replace {
            // The front in place serves until the new one is known to start.
            self.check_new_front(container, front, &record)
                .await
                .map_err(|e| {
                    StepError::Failed(Error::Apply(format!(
                        "{e}\n{container} keeps running as it was: fix the spec's `front:` and \
                         apply again"
                    )))
                })?;
        }
        state::write_front(&spec.storage, spec, front, &record)?;
        if replace {
            self.remove(container).await?;
        }
        let id = self
            .engine
            .create_container(&CreateContainer {
                name: container.to_string(),
                image: front.image.to_string(),
                labels: front::labels(spec, front),
                network: Some(spec.network_name()),
                ports: front
                    .ports
                    .iter()
                    .map(|p| PortBinding {
                        host_ip: p.port.host_ip.clone(),
                        host_port: p.port.host_port,
                        container_port: p.port.container_port,
                        proto: "tcp".into(),
                    })
                    .collect(),
                binds: vec![(front::dir(&spec.storage), front::MOUNT.to_string())],
                cmd: Some(
                    [
                        "haproxy",
                        "-W",
                        "-db",
                        "-f",
                        &format!("{}/{}", front::MOUNT, front::CONFIG_FILE),
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                restart: true,
                // The official image runs as `haproxy`, which may not create the
                // runtime socket in the host directory gemctl owns.
                user: Some("root".into()),
                ..CreateContainer::default()
            })
            .await?;
        self.known.insert(container.to_string(), id);
        self.start_front(container).await
    }

    /// Before a changed front replaces the one in place: HAProxy accepts the new
    /// configuration (`haproxy -c` in the new image, on the files rendered aside),
    /// and no one else holds a public port the new front adds.
    async fn check_new_front(
        &self,
        container: &str,
        front: &FrontSpec,
        record: &FrontState,
    ) -> Result<(), Error> {
        let spec = self.spec;
        let aside = front::dir(&spec.storage).join(".check");
        let _ = std::fs::remove_dir_all(&aside);
        state::write_front_files(&aside, spec, front, record)?;
        let checked = copy::run_one_shot(
            self.engine,
            spec,
            OneShot {
                name: desired::copy_container_name(spec, 0),
                generation: 0,
                image: front.image.to_string(),
                env: Vec::new(),
                binds: vec![(aside.clone(), front::MOUNT.to_string())],
                script: format!("haproxy -c -q -f {}/{}", front::MOUNT, front::CONFIG_FILE),
                what: format!("the check of the new front configuration ({})", front.image),
            },
        )
        .await;
        let _ = std::fs::remove_dir_all(&aside);
        checked?;

        let containers = self.engine.list_containers().await?;
        let held_now: Vec<u16> = containers
            .iter()
            .filter(|c| c.name == container)
            .flat_map(|c| c.ports.iter())
            .filter_map(|p| p.split("->").next()?.rsplit(':').next()?.parse().ok())
            .collect();
        let added: Vec<_> = front
            .ports
            .iter()
            .filter_map(|p| p.port.host_binding())
            .filter(|(_, port)| !held_now.contains(port))
            .collect();
        let holders = port_holder::explain(self.engine, "", &added).await;
        if holders.is_empty() {
            Ok(())
        } else {
            Err(Error::Apply(format!(
                "the new front could not take its ports: {}",
                holders.join("; ")
            )))
        }
    }

    pub(super) async fn start_front(&mut self, container: &str) -> Result<(), StepError> {
        if let Err(e) = self.engine.start_container(container).await {
            let mut message = e.to_string();
            if !port_holder::is_port_conflict(&message) {
                return Err(e.into());
            }
            let ports: Vec<_> = front_of(self.spec)?
                .ports
                .iter()
                .filter_map(|p| p.port.host_binding())
                .collect();
            for holder in port_holder::explain(self.engine, &message, &ports).await {
                message.push_str(&format!("; {holder}"));
            }
            return Err(StepError::Failed(Error::Apply(message)));
        }
        let socket = front::dir(&self.spec.storage).join(front::SOCKET_FILE);
        let started = Instant::now();
        loop {
            match front_api::send(&socket, "show info").await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() >= FRONT_START => {
                    let logs = self.engine.logs(container, 20).await.unwrap_or_default();
                    return Err(StepError::Failed(Error::Apply(format!(
                        "{container} did not answer on its runtime API within {}s ({e}); its \
                         last log lines:\n{logs}",
                        FRONT_START.as_secs()
                    ))));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Names `generation`'s app in the slot that does not take traffic, and waits
    /// until the front has its address.
    pub(super) async fn prepare_front(&mut self, generation: u64) -> Result<(), StepError> {
        let (slot, next) = self.front_state()?.prepared(generation);
        self.write_front(&next)?;
        let app = desired::container_name(self.spec, Role::App, generation);
        for be in front::backends(front_of(self.spec)?) {
            self.front_api(&format!("set server {be}/{} fqdn {app}", slot.name()))
                .await?;
            self.wait_resolved(&be, slot, &app).await?;
        }
        Ok(())
    }

    /// New requests wait at the front: `hold` is the only server ready. Then the
    /// connections still open to the app that stops next may finish, for up to
    /// `front.drain`.
    pub(super) async fn hold_front(&mut self) -> Result<(), StepError> {
        let front = front_of(self.spec)?;
        let before = self.front_state()?;
        self.write_front(&before.held())?;
        let backends = front::backends(front);
        for be in &backends {
            self.front_api(&format!(
                "set server {be}/{} state ready",
                front::HOLD_SERVER
            ))
            .await?;
            for slot in [Slot::Blue, Slot::Green] {
                self.front_api(&format!("set server {be}/{} state maint", slot.name()))
                    .await?;
            }
        }
        match before.serving_slot() {
            Some(draining) => self.drain(draining).await,
            None => Ok(()),
        }
    }

    /// The front switched away from `generation`'s app: the requests open to it
    /// finish, for up to `front.drain`, before it stops.
    pub(super) async fn drain_front(&mut self, generation: u64) -> Result<(), StepError> {
        match self.front_state()?.slot_of(generation) {
            Some(slot) => self.drain(slot).await,
            None => Ok(()),
        }
    }

    /// Waits until no connection has been open to `draining` for a while, or
    /// `front.drain` passed.
    async fn drain(&mut self, draining: Slot) -> Result<(), StepError> {
        let front = front_of(self.spec)?;
        let backends = front::backends(front);
        let socket = front::dir(&self.spec.storage).join(front::SOCKET_FILE);
        let started = Instant::now();
        // A connection accepted just before the switch to `hold` is given its server
        // a moment later, and only then counted: the count must stay at zero for a
        // while before the app may stop.
        let mut quiet_since: Option<Instant> = None;
        loop {
            let open = front_api::send(&socket, "show stat -1 4 -1")
                .await
                .map_or(1, |s| {
                    front::open_connections(&s, &backends, draining.name())
                });
            match (open, quiet_since) {
                (0, Some(t)) if t.elapsed() >= DRAIN_QUIET => return Ok(()),
                (0, None) => quiet_since = Some(Instant::now()),
                (0, Some(_)) => {}
                _ => quiet_since = None,
            }
            if started.elapsed() >= front.drain.get() {
                self.progress(format!(
                    "{open} connection(s) still open after the drain of {}: the app stops now",
                    humantime::format_duration(front.drain.get())
                ));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// New connections, and those held, go to `generation`'s app; every other
    /// server is put in maintenance (connections open to them finish).
    pub(super) async fn switch_front(&mut self, generation: u64) -> Result<(), StepError> {
        let before = self.front_state()?;
        let app = desired::container_name(self.spec, Role::App, generation);
        // Clients may write through it from the switch on: its data is never
        // deleted as debris again.
        self.record_served(generation)?;
        let next = before.switched(generation);
        let slot = next.live.expect("a switched front has a live slot");
        self.write_front(&next)?;
        for be in front::backends(front_of(self.spec)?) {
            // Again even when the record names it: a run killed between writing
            // the record and telling the front left the front without it.
            self.front_api(&format!("set server {be}/{} fqdn {app}", slot.name()))
                .await?;
            self.wait_resolved(&be, slot, &app).await?;
            self.front_api(&format!("set server {be}/{} state ready", slot.name()))
                .await?;
            for other in [slot.other().name(), front::HOLD_SERVER] {
                self.front_api(&format!("set server {be}/{other} state maint"))
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits until the front resolved `slot` of backend `be` to `app`'s address:
    /// a slot without one would turn requests away instead of holding them.
    async fn wait_resolved(&self, be: &str, slot: Slot, app: &str) -> Result<(), StepError> {
        let socket = front::dir(&self.spec.storage).join(front::SOCKET_FILE);
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < RESOLVE {
            let answer = front_api::send(&socket, &format!("show servers state {be}"))
                .await
                .unwrap_or_default();
            if let Some(line) = answer
                .lines()
                .find(|l| l.split_whitespace().nth(3) == Some(slot.name()))
            {
                if front::resolved(line, app) {
                    return Ok(());
                }
                last = line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StepError::Failed(Error::Apply(format!(
            "the front did not resolve {app} for {be}/{} within {}s (its state: {last:?}): is \
             {app} running on the network {}?",
            slot.name(),
            RESOLVE.as_secs(),
            self.spec.network_name()
        ))))
    }

    fn write_front(&self, next: &FrontState) -> Result<(), StepError> {
        let spec = self.spec;
        state::write_front(&spec.storage, spec, front_of(self.spec)?, next)?;
        Ok(())
    }

    async fn front_api(&self, command: &str) -> Result<(), StepError> {
        front_api::command(&self.spec.storage, command).await?;
        Ok(())
    }
}
