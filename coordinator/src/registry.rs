//! The registry of pipeline actors: creates them from the store at start and on PutPipeline,
//! and finds them by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use crate::actor_home::ActorHome;
use crate::error::CoordError;
use crate::execution::actor::Redefine;
use crate::execution::{PipelineActor, Shared};
use crate::pipeline::{PipelineSpec, parse_pipeline_file};
use crate::store::records::PipelineRecord;
use crate::store::{Op, Tree, key_num};

/// Every pipeline actor, by name.
pub struct Registry {
    shared: Shared,
    home: ActorHome,
    actors: Mutex<HashMap<String, Addr<PipelineActor>>>,
    puts: tokio::sync::Mutex<()>,
}

/// The outcome of a PutPipeline.
#[derive(Debug, Clone)]
pub struct Put {
    /// The stored record.
    pub record: PipelineRecord,
    /// Its parsed definition.
    pub spec: Arc<PipelineSpec>,
    /// False when the text was identical to the stored version.
    pub changed: bool,
}

impl Registry {
    /// A registry whose actors run in `home` (an `ArbiterHandle` or an [`ActorHome`]).
    pub fn new(shared: Shared, home: impl Into<ActorHome>) -> Self {
        Self {
            shared,
            home: home.into(),
            actors: Mutex::new(HashMap::new()),
            puts: tokio::sync::Mutex::new(()),
        }
    }

    fn actors(&self) -> std::sync::MutexGuard<'_, HashMap<String, Addr<PipelineActor>>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_actor(&self, actor: PipelineActor) -> Addr<PipelineActor> {
        self.home.start(move |_| actor)
    }

    /// Starts an actor for every stored pipeline (after a restart).
    pub fn load_all(&self) -> Result<usize, CoordError> {
        let records = self
            .shared
            .store
            .scan_json::<PipelineRecord>(Tree::Pipelines, b"")?;
        for record in &records {
            let actor = PipelineActor::load(record, self.shared.clone())?;
            let addr = self.start_actor(actor);
            self.actors().insert(record.name.clone(), addr);
        }
        Ok(records.len())
    }

    /// Stores a pipeline definition (a new version when it changed) and (re)starts its actor.
    pub async fn put(&self, yaml: &str, source_name: &str) -> Result<Put, CoordError> {
        let source_name = if source_name.is_empty() {
            "pipeline.yaml"
        } else {
            source_name
        };
        let spec = Arc::new(
            parse_pipeline_file(source_name, yaml)
                .map_err(|e| CoordError::Invalid(e.to_string()))?,
        );
        let _one_at_a_time = self.puts.lock().await;
        let current = self.record(&spec.name).ok();
        if let Some(current) = current.as_ref().filter(|c| c.yaml == yaml) {
            return Ok(Put {
                record: current.clone(),
                spec,
                changed: false,
            });
        }
        let record = PipelineRecord {
            name: spec.name.clone(),
            version: current.map(|c| c.version + 1).unwrap_or(1),
            yaml: yaml.to_string(),
            source_name: source_name.to_string(),
            updated_at_ms: self.shared.clock.now_ms(),
        };
        self.shared
            .store
            .write(vec![
                Op::put_json(Tree::Pipelines, record.name.as_bytes(), &record),
                Op::Put(
                    Tree::PipelineVersions,
                    key_num(&record.name, record.version),
                    yaml.as_bytes().to_vec(),
                ),
            ])
            .await?;
        let existing = self.actors().get(&record.name).cloned();
        match existing {
            Some(addr) => {
                addr.send(Redefine {
                    record: record.clone(),
                    spec: spec.clone(),
                })
                .await?
            }
            None => {
                let actor = PipelineActor::load(&record, self.shared.clone())?;
                let addr = self.start_actor(actor);
                self.actors().insert(record.name.clone(), addr);
            }
        }
        Ok(Put {
            record,
            spec,
            changed: true,
        })
    }

    /// The actor of pipeline `name`.
    pub fn actor(&self, name: &str) -> Result<Addr<PipelineActor>, CoordError> {
        self.actors()
            .get(name)
            .cloned()
            .ok_or_else(|| CoordError::NotFound(format!("pipeline '{name}' not found")))
    }

    /// The stored record of pipeline `name`.
    pub fn record(&self, name: &str) -> Result<PipelineRecord, CoordError> {
        self.shared
            .store
            .get_json(Tree::Pipelines, name.as_bytes())?
            .ok_or_else(|| CoordError::NotFound(format!("pipeline '{name}' not found")))
    }

    /// Every stored pipeline, by name.
    pub fn list(&self) -> Result<Vec<PipelineRecord>, CoordError> {
        Ok(self.shared.store.scan_json(Tree::Pipelines, b"")?)
    }

    /// What every actor shares.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}
