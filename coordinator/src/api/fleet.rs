//! The fleet's RPCs on `PipelineService`: DrainWorker and CheckFence.

use baton_proto::v1 as pb;

use super::pipeline_server::PipelineApi;
use crate::dispatcher::{DrainWorkerNamed, WorkerView};
use crate::error::CoordError;
use crate::execution::fence::CheckFence;

/// A worker as the API shows it.
pub fn worker_info(w: WorkerView) -> pb::WorkerInfo {
    pb::WorkerInfo {
        name: w.name,
        labels: w.labels.into_iter().collect(),
        slots: w.slots,
        slots_in_use: w.slots_in_use,
        running_jobs: w.running_jobs,
        state: w.state as i32,
        last_seen_ms: w.last_seen_ms,
    }
}

impl PipelineApi {
    pub(super) async fn inner_drain_worker(
        &self,
        req: pb::DrainWorkerRequest,
    ) -> Result<pb::DrainWorkerResponse, CoordError> {
        if req.name.is_empty() {
            return Err(CoordError::Invalid(
                "DrainWorker needs a worker name".into(),
            ));
        }
        let found = self
            .registry
            .shared()
            .dispatcher
            .send(DrainWorkerNamed(req.name.clone()))
            .await?;
        match found {
            Some(w) => Ok(pb::DrainWorkerResponse {
                worker: Some(worker_info(w)),
            }),
            None => Err(CoordError::NotFound(format!(
                "no worker named {} is known; `baton workers` lists them",
                req.name
            ))),
        }
    }

    pub(super) async fn inner_check_fence(
        &self,
        req: pb::CheckFenceRequest,
    ) -> Result<pb::CheckFenceResponse, CoordError> {
        if req.stage.is_empty() {
            return Err(CoordError::Invalid("CheckFence needs a stage".into()));
        }
        let actor = self.registry.actor(&req.pipeline)?;
        let answer = actor
            .send(CheckFence {
                stage: req.stage,
                lane: req.lane,
                token: req.token,
            })
            .await??;
        Ok(pb::CheckFenceResponse {
            holds: answer.holds,
            current_token: answer.current_token,
            holder_execution_id: answer.holder_execution_id,
            message: answer.message,
        })
    }
}
