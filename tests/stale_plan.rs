//! The executor's stale-plan check: when the container a destructive step is about
//! to touch is no longer the one the plan saw, apply stops with a clear error and
//! touches nothing more. Driven by a scripted engine (the real-engine behaviour of
//! apply is in tests/apply.rs); here the point is the moment of the swap.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use gemctl::engine::{CreateContainer, Engine, EngineError, ExecOutput};
use gemctl::execute::{self, ApplyOptions};
use gemctl::observed::{Container, ContainerState, Observed};
use gemctl::spec::Spec;

/// An engine holding containers in memory; `swap_before_stop` makes gem-1 a
/// different container (new id) the moment anyone looks after db-2 exists.
struct Scripted {
    containers: Mutex<Vec<Container>>,
    networks: Vec<String>,
    calls: Mutex<Vec<String>>,
}

impl Scripted {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Engine for Scripted {
    async fn list_containers(&self) -> Result<Vec<Container>, EngineError> {
        let mut cs = self.containers.lock().unwrap();
        if cs.iter().any(|c| c.name == "db-2") {
            // Someone recreated gem-1 behind gemctl's back.
            if let Some(c) = cs.iter_mut().find(|c| c.name == "gem-1") {
                c.id = "someone-elses".into();
            }
        }
        Ok(cs.clone())
    }
    async fn list_networks(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.networks.clone())
    }
    async fn create_network(
        &self,
        n: &str,
        _: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.log(format!("create network {n}"));
        Ok(())
    }
    async fn remove_network(&self, _: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn image_present(&self, _: &str) -> Result<bool, EngineError> {
        Ok(true)
    }
    async fn image_env(&self, _: &str) -> Result<Option<Vec<String>>, EngineError> {
        Ok(Some(Vec::new()))
    }
    async fn pull_image(&self, _: &str) -> Result<(), EngineError> {
        Ok(())
    }
    async fn create_container(&self, spec: &CreateContainer) -> Result<String, EngineError> {
        self.log(format!("create {}", spec.name));
        self.containers.lock().unwrap().push(Container {
            name: spec.name.clone(),
            id: format!("new-{}", spec.name),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
            state: ContainerState::Created,
            health: None,
            ports: Vec::new(),
            created: None,
        });
        Ok(format!("new-{}", spec.name))
    }
    async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.log(format!("start {name}"));
        if let Some(c) = self
            .containers
            .lock()
            .unwrap()
            .iter_mut()
            .find(|c| c.name == name)
        {
            c.state = ContainerState::Running;
        }
        Ok(())
    }
    async fn stop_container(&self, name: &str, _: Duration) -> Result<(), EngineError> {
        self.log(format!("stop {name}"));
        Ok(())
    }
    async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        self.log(format!("remove {name}"));
        Ok(())
    }
    async fn wait_container(&self, _: &str) -> Result<i64, EngineError> {
        Ok(0)
    }
    async fn exec(&self, _: &str, _: &[String]) -> Result<ExecOutput, EngineError> {
        Ok(ExecOutput {
            exit_code: 0,
            stdout: "1\n".into(),
            stderr: String::new(),
        })
    }
    async fn logs(&self, _: &str, _: usize) -> Result<String, EngineError> {
        Ok(String::new())
    }
    async fn published_port(&self, _: &str, _: u16) -> Result<Option<(String, u16)>, EngineError> {
        Ok(None)
    }
}

#[test]
fn a_container_replaced_mid_apply_stops_the_apply_before_it_is_touched() {
    let storage = tempfile::tempdir().unwrap();
    let spec_for = |g: u64| {
        let text = format!(
            "project: shop\ngeneration: {g}\nstorage: {}\nscope: project\n\
             app: {{ image: \"example/shop:v{g}\", ports: [\"80:8080\"] }}\n\
             db: {{ image: \"postgres:15\" }}\n",
            storage.path().display()
        );
        Spec::parse(std::path::Path::new("shop.yaml"), &text).unwrap()
    };
    // Generation 1 live, as the fake planner engine would leave it.
    let before: Observed = support::deployed_with(&[spec_for(1)]);
    gemctl::state::mark_ready(&storage.path().join("1"), None).unwrap();
    gemctl::state::set_live(storage.path(), 1).unwrap();
    let engine = Scripted {
        containers: Mutex::new(before.containers.clone()),
        networks: before.networks.clone(),
        calls: Mutex::new(Vec::new()),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(execute::apply(
            &engine,
            &spec_for(2),
            ApplyOptions::default(),
            &mut |_| {},
        ))
        .expect_err("the swap is noticed");
    let message = err.to_string();
    assert!(
        message.contains("the host changed while applying"),
        "{message}"
    );
    assert!(message.contains("gem-1"), "{message}");
    assert!(
        message.contains("stop gem-1"),
        "stopped before that step: {message}"
    );
    let calls = engine.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["create db-2", "start db-2"],
        "nothing after the swap was touched"
    );
}
