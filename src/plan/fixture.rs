//! Small hosts for the planner's unit tests: a spec, its apps as gemctl makes them,
//! and generation directories with any marker.

use std::path::Path;

use crate::desired;
use crate::labels;
use crate::observed::{Container, ContainerState, GenerationData, Marker, Observed, Storage};
use crate::spec::Spec;

/// Project `shop` at `generation`, retaining 2.
pub(super) fn spec(generation: u64) -> Spec {
    let text = format!(
        r#"
project: shop
generation: {generation}
retain: 2
storage: /srv/shop
app:
  image: "example/shop:v1"
  ports: ["80:8080"]
db:
  image: "postgres:15"
"#
    );
    Spec::parse(Path::new("shop.yaml"), &text).expect("test spec is valid")
}

/// Generation `n`'s directory with `marker`.
pub(super) fn data(n: u64, marker: Marker) -> GenerationData {
    GenerationData {
        generation: n,
        marker,
        pg_major: None,
    }
}

/// Generation `n`'s directory, its data complete.
pub(super) fn ready(n: u64) -> GenerationData {
    data(n, Marker::Ready { copied_from: None })
}

/// Generation `n`'s app as gemctl makes it, public or a health-check probe.
pub(super) fn app(spec: &Spec, n: u64, state: ContainerState, public: bool) -> Container {
    let want = desired::app(spec, n);
    let mut labels = want.labels(&spec.project);
    let exposure = if public {
        labels::EXPOSURE_PUBLIC
    } else {
        labels::EXPOSURE_PROBE
    };
    labels.insert(labels::EXPOSURE.into(), exposure.into());
    Container {
        labels,
        name: want.name,
        id: String::new(),
        image: want.image,
        state,
        health: None,
        ports: Vec::new(),
        created: None,
    }
}

/// A host with these containers and generation directories, and a record of
/// generations that served (empty unless set).
pub(super) fn observed(containers: Vec<Container>, generations: Vec<GenerationData>) -> Observed {
    Observed {
        containers,
        networks: Vec::new(),
        db_image_major: None,
        storage: Storage {
            generations,
            served: Some(Default::default()),
            ..Storage::default()
        },
    }
}
