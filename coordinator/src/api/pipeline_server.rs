//! `PipelineService`: each RPC is a thin call into the registry, an actor or the store.

use std::pin::Pin;
use std::sync::Arc;

use baton_proto::v1::{self as pb, pipeline_service_server::PipelineService};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert;
use crate::dispatcher::ListWorkers;
use crate::error::CoordError;
use crate::execution::actor::{GetState, Start, Stop, StopMode};
use crate::execution::approval::Decide;
use crate::execution::policies::{Resume, SetTransition};
use crate::execution::retry::Retry;
use crate::logs::LogHub;
use crate::registry::Registry;
use crate::stage::rules::Transition;
use crate::store::records::{ExecutionRecord, JobRecord};
use crate::store::{Tree, prefix};

/// The client API.
pub struct PipelineApi {
    /// Pipeline actors.
    pub registry: Arc<Registry>,
    /// Job logs.
    pub logs: Arc<LogHub>,
    /// Ends every stream when the coordinator shuts down.
    pub shutdown: CancellationToken,
    /// The store's directory (BackupStore checks the caller means this one).
    pub data_dir: std::path::PathBuf,
    /// Size limits on pipeline files.
    pub limits: crate::pipeline::PipelineLimits,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl PipelineApi {
    fn execution(&self, id: &str) -> Result<ExecutionRecord, CoordError> {
        self.registry
            .shared()
            .store
            .get_json(Tree::Executions, id.as_bytes())?
            .ok_or_else(|| CoordError::NotFound(format!("execution {id} not found")))
    }

    fn execution_proto(&self, e: &ExecutionRecord) -> pb::PipelineExecution {
        let store = &self.registry.shared().store;
        convert::execution(e, |id| {
            store
                .get_json::<JobRecord>(Tree::Jobs, id.as_bytes())
                .ok()
                .flatten()
        })
    }

    /// Refuses a file over the limits before anything is stored.
    fn check_limits(&self, req: &pb::PutPipelineRequest) -> Result<(), CoordError> {
        let source = if req.source_name.is_empty() {
            "pipeline.yaml"
        } else {
            &req.source_name
        };
        // A file that does not parse is refused by the registry with its own error.
        let Ok(spec) = crate::pipeline::parse_pipeline_file(source, &req.definition_yaml) else {
            return Ok(());
        };
        let stored = self.registry.list()?;
        let is_new = !stored.iter().any(|p| p.name == spec.name);
        self.limits
            .check(&spec, stored.len(), is_new)
            .map_err(CoordError::Invalid)
    }

    fn pipeline_proto(&self, name: &str) -> Result<pb::Pipeline, CoordError> {
        let record = self.registry.record(name)?;
        let spec = crate::pipeline::parse_pipeline_file(&record.source_name, &record.yaml)
            .map_err(|e| CoordError::Invalid(e.to_string()))?;
        Ok(pb::Pipeline {
            name: record.name,
            version: record.version,
            definition: Some(crate::pipeline::proto::to_proto(&spec)),
            definition_yaml: record.yaml,
            updated_at_ms: record.updated_at_ms,
        })
    }
}

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    async fn put_pipeline(
        &self,
        req: Request<pb::PutPipelineRequest>,
    ) -> Result<Response<pb::PutPipelineResponse>, Status> {
        let req = req.into_inner();
        self.check_limits(&req)?;
        let put = self
            .registry
            .put(&req.definition_yaml, &req.source_name)
            .await?;
        Ok(Response::new(pb::PutPipelineResponse {
            pipeline: Some(self.pipeline_proto(&put.record.name)?),
            changed: put.changed,
        }))
    }

    async fn get_pipeline(
        &self,
        req: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::Pipeline>, Status> {
        Ok(Response::new(self.pipeline_proto(&req.into_inner().name)?))
    }

    async fn list_pipelines(
        &self,
        _: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let pipelines = self
            .registry
            .list()?
            .into_iter()
            .map(|r| pb::PipelineSummary {
                stage_count: crate::pipeline::parse_pipeline_file(&r.source_name, &r.yaml)
                    .map(|s| s.stages.len() as u32)
                    .unwrap_or(0),
                name: r.name,
                version: r.version,
                updated_at_ms: r.updated_at_ms,
            })
            .collect();
        Ok(Response::new(pb::ListPipelinesResponse { pipelines }))
    }

    async fn start_pipeline_execution(
        &self,
        req: Request<pb::StartPipelineExecutionRequest>,
    ) -> Result<Response<pb::StartPipelineExecutionResponse>, Status> {
        tracing::trace!(target: "baton::hop", "api-start");
        let req = req.into_inner();
        let revision = convert::revision_from(req.revision);
        if revision.branch.is_empty() || revision.commit.is_empty() {
            return Err(Status::invalid_argument(
                "a revision needs a branch and a commit",
            ));
        }
        let token = req.client_request_token;
        if token.len() > 128 || token.chars().any(|c| c.is_control()) {
            return Err(Status::invalid_argument(
                "client_request_token must be at most 128 printable characters",
            ));
        }
        let actor = self.registry.actor(&req.pipeline)?;
        let started = actor
            .send(Start {
                revision,
                client_request_token: token,
            })
            .await
            .map_err(CoordError::from)??;
        tracing::trace!(target: "baton::hop", "api-start-answer");
        Ok(Response::new(pb::StartPipelineExecutionResponse {
            execution_id: started.execution_id,
            deduplicated: started.deduplicated,
        }))
    }

    async fn stop_pipeline_execution(
        &self,
        req: Request<pb::StopPipelineExecutionRequest>,
    ) -> Result<Response<pb::StopPipelineExecutionResponse>, Status> {
        tracing::trace!(target: "baton::hop", "api-stop");
        let req = req.into_inner();
        let mode = match pb::StopMode::try_from(req.mode) {
            Ok(pb::StopMode::Abandon) => StopMode::Abandon,
            _ => StopMode::Wait,
        };
        let exec = self.execution(&req.execution_id)?;
        let actor = self.registry.actor(&exec.pipeline)?;
        let stopped = actor
            .send(Stop {
                execution_id: req.execution_id,
                mode,
                reason: req.reason,
            })
            .await
            .map_err(CoordError::from)??;
        Ok(Response::new(pb::StopPipelineExecutionResponse {
            execution: Some(self.execution_proto(&stopped)),
        }))
    }

    async fn get_pipeline_state(
        &self,
        req: Request<pb::GetPipelineStateRequest>,
    ) -> Result<Response<pb::PipelineState>, Status> {
        let actor = self.registry.actor(&req.into_inner().pipeline)?;
        let view = actor.send(GetState).await.map_err(CoordError::from)?;
        Ok(Response::new(convert::pipeline_state(&view)))
    }

    async fn get_pipeline_execution(
        &self,
        req: Request<pb::GetPipelineExecutionRequest>,
    ) -> Result<Response<pb::PipelineExecution>, Status> {
        let exec = self.execution(&req.into_inner().execution_id)?;
        Ok(Response::new(self.execution_proto(&exec)))
    }

    async fn list_pipeline_executions(
        &self,
        req: Request<pb::ListPipelineExecutionsRequest>,
    ) -> Result<Response<pb::ListPipelineExecutionsResponse>, Status> {
        let req = req.into_inner();
        self.registry.record(&req.pipeline)?;
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit as usize
        };
        let store = &self.registry.shared().store;
        // Newest first is a reverse range scan of the pipeline's history index.
        let ids = store
            .scan_last(Tree::ExecutionIndex, &prefix(&req.pipeline), limit)
            .map_err(CoordError::from)?;
        let mut executions = Vec::new();
        for (_, id) in &ids {
            if let Ok(exec) = self.execution(&String::from_utf8_lossy(id)) {
                executions.push(self.execution_proto(&exec));
            }
        }
        Ok(Response::new(pb::ListPipelineExecutionsResponse {
            executions,
        }))
    }

    type WatchPipelineStream = Stream_<pb::PipelineEvent>;

    async fn watch_pipeline(
        &self,
        req: Request<pb::WatchPipelineRequest>,
    ) -> Result<Response<Self::WatchPipelineStream>, Status> {
        let req = req.into_inner();
        let pipeline = req.pipeline;
        self.registry.record(&pipeline)?;
        let shared = self.registry.shared();
        let last = crate::events::last_seq(&shared.store, &pipeline).map_err(CoordError::from)?;
        let after = match req.since {
            None => last,
            Some(since) if since <= last => {
                let first =
                    crate::events::first_seq(&shared.store, &pipeline).map_err(CoordError::from)?;
                if since > 0 && since + 1 < first {
                    return Err(Status::out_of_range(format!(
                        "events {} to {} of pipeline '{pipeline}' were removed by retention; read its state again and watch with since {}",
                        since + 1,
                        first - 1,
                        first - 1
                    )));
                }
                since
            }
            Some(since) => {
                return Err(Status::out_of_range(format!(
                    "since {since} is past the last event of pipeline '{pipeline}' ({last}); watch again with since {last} or without since"
                )));
            }
        };
        let events = crate::events::watch(
            shared.store.clone(),
            &shared.events,
            pipeline,
            after,
            self.shutdown.clone(),
        );
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|e| match e {
            Ok(e) => Ok(convert::event(&e)),
            Err(e) => Err(Status::from(CoordError::from(e))),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type TailJobLogStream = Stream_<pb::LogChunk>;

    async fn tail_job_log(
        &self,
        req: Request<pb::TailJobLogRequest>,
    ) -> Result<Response<Self::TailJobLogStream>, Status> {
        let req = req.into_inner();
        let store = &self.registry.shared().store;
        let job: JobRecord = store
            .get_json(Tree::Jobs, req.job_id.as_bytes())
            .map_err(CoordError::from)?
            .ok_or_else(|| Status::not_found(format!("job {} not found", req.job_id)))?;
        // Subscribe before reading what is stored, so nothing falls in between.
        let live = if req.follow {
            self.logs.subscribe(&job.id, job.status.is_final())
        } else {
            None
        };
        // Chunks broadcast before we subscribed may still be on their way to the store.
        store.barrier().await.map_err(CoordError::from)?;
        let stored = self
            .logs
            .stored(&job.id, req.offset)
            .map_err(CoordError::from)?;
        let mut next = stored
            .last()
            .map(|c| c.offset + c.data.len() as u64)
            .unwrap_or(req.offset);
        let job_id = job.id.clone();
        let to_proto = move |c: crate::logs::Chunk| pb::LogChunk {
            job_id: job_id.clone(),
            offset: c.offset,
            data: c.data,
            stream: c.stream,
            step: c.step,
            end: None,
        };
        let head = tokio_stream::iter(
            stored
                .into_iter()
                .map(to_proto.clone())
                .map(Ok)
                .collect::<Vec<_>>(),
        );
        let tail = live.map(|rx| {
            tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |c| match c {
                Ok(c) if c.offset >= next => {
                    next = c.offset + c.data.len() as u64;
                    Some(Ok(to_proto(c)))
                }
                Ok(_) => None,
                Err(_) => Some(Err(Status::data_loss(
                    "log follower fell behind; tail again with --offset",
                ))),
            })
        });
        let end = futures::StreamExt::filter_map(
            futures::stream::once(job_end(
                store.clone(),
                self.registry.shared().events.clone(),
                job.id.clone(),
                req.follow,
            )),
            futures::future::ready,
        );
        let shutdown = self.shutdown.clone().cancelled_owned();
        let stream: Self::TailJobLogStream = match tail {
            Some(tail) => Box::pin(futures::StreamExt::take_until(
                head.chain(tail).chain(end),
                shutdown,
            )),
            None => Box::pin(head.chain(end)),
        };
        Ok(Response::new(stream))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self
            .registry
            .shared()
            .dispatcher
            .send(ListWorkers)
            .await
            .map_err(CoordError::from)?
            .into_iter()
            .map(super::fleet::worker_info)
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn put_approval_result(
        &self,
        req: Request<pb::PutApprovalResultRequest>,
    ) -> Result<Response<pb::PutApprovalResultResponse>, Status> {
        let req = req.into_inner();
        let approve = match pb::ApprovalDecision::try_from(req.decision) {
            Ok(pb::ApprovalDecision::Approve) => true,
            Ok(pb::ApprovalDecision::Reject) => false,
            _ => {
                return Err(Status::invalid_argument(
                    "decision must be APPROVE or REJECT",
                ));
            }
        };
        let exec = self.execution(&req.execution_id)?;
        let actor = self.registry.actor(&exec.pipeline)?;
        let decided = actor
            .send(Decide {
                execution_id: req.execution_id,
                stage: req.stage,
                action: req.action,
                approve,
                by: req.by,
                comment: req.comment,
            })
            .await
            .map_err(CoordError::from)??;
        Ok(Response::new(pb::PutApprovalResultResponse {
            execution: Some(self.execution_proto(&decided)),
        }))
    }

    async fn retry_stage_execution(
        &self,
        req: Request<pb::RetryStageExecutionRequest>,
    ) -> Result<Response<pb::RetryStageExecutionResponse>, Status> {
        let req = req.into_inner();
        let all_actions = match pb::RetryMode::try_from(req.mode) {
            Ok(pb::RetryMode::AllActions) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown retry mode {}",
                    req.mode
                )));
            }
        };
        let exec = self.execution(&req.execution_id)?;
        let actor = self.registry.actor(&exec.pipeline)?;
        let retried = actor
            .send(Retry {
                execution_id: req.execution_id,
                stage: req.stage,
                all_actions,
            })
            .await
            .map_err(CoordError::from)??;
        Ok(Response::new(pb::RetryStageExecutionResponse {
            execution: Some(self.execution_proto(&retried)),
        }))
    }

    async fn disable_stage_transition(
        &self,
        req: Request<pb::DisableStageTransitionRequest>,
    ) -> Result<Response<pb::StageTransitionResponse>, Status> {
        let req = req.into_inner();
        let by = if req.by.trim().is_empty() {
            "someone".to_string()
        } else {
            req.by
        };
        let transition = Transition::Disabled {
            by,
            reason: req.reason,
            since_ms: self.registry.shared().clock.now_ms(),
        };
        self.set_transition(req.pipeline, req.stage, transition)
            .await
    }

    async fn enable_stage_transition(
        &self,
        req: Request<pb::EnableStageTransitionRequest>,
    ) -> Result<Response<pb::StageTransitionResponse>, Status> {
        let req = req.into_inner();
        self.set_transition(req.pipeline, req.stage, Transition::Enabled)
            .await
    }

    async fn resume_pipeline_execution(
        &self,
        req: Request<pb::ResumePipelineExecutionRequest>,
    ) -> Result<Response<pb::ResumePipelineExecutionResponse>, Status> {
        let id = req.into_inner().execution_id;
        let exec = self.execution(&id)?;
        let actor = self.registry.actor(&exec.pipeline)?;
        let resumed = actor
            .send(Resume { execution_id: id })
            .await
            .map_err(CoordError::from)??;
        Ok(Response::new(pb::ResumePipelineExecutionResponse {
            execution: Some(self.execution_proto(&resumed)),
        }))
    }

    async fn backup_store(
        &self,
        req: Request<pb::BackupStoreRequest>,
    ) -> Result<Response<pb::BackupStoreResponse>, Status> {
        let req = req.into_inner();
        let ours = std::fs::canonicalize(&self.data_dir).unwrap_or(self.data_dir.clone());
        if !req.data_dir.is_empty()
            && std::fs::canonicalize(&req.data_dir).ok().as_ref() != Some(&ours)
        {
            return Err(Status::failed_precondition(format!(
                "this coordinator's store is {}, not {}",
                ours.display(),
                req.data_dir
            )));
        }
        let path = std::path::PathBuf::from(&req.path);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(
                "the backup path must be absolute (it is written on the coordinator's host)",
            ));
        }
        let summary = self
            .registry
            .shared()
            .store
            .exclusive(move |engine| crate::backup::write_file(engine, &path))
            .await
            .map_err(CoordError::from)?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::BackupStoreResponse {
            entries: summary.entries,
            bytes: summary.bytes,
            schema_version: summary.schema_version.unwrap_or(0),
            data_dir: ours.display().to_string(),
        }))
    }

    async fn drain_worker(
        &self,
        req: Request<pb::DrainWorkerRequest>,
    ) -> Result<Response<pb::DrainWorkerResponse>, Status> {
        Ok(Response::new(
            self.inner_drain_worker(req.into_inner()).await?,
        ))
    }

    async fn check_fence(
        &self,
        req: Request<pb::CheckFenceRequest>,
    ) -> Result<Response<pb::CheckFenceResponse>, Status> {
        Ok(Response::new(
            self.inner_check_fence(req.into_inner()).await?,
        ))
    }
}

impl PipelineApi {
    async fn set_transition(
        &self,
        pipeline: String,
        stage: String,
        transition: Transition,
    ) -> Result<Response<pb::StageTransitionResponse>, Status> {
        let actor = self.registry.actor(&pipeline)?;
        let now = actor
            .send(SetTransition { stage, transition })
            .await
            .map_err(CoordError::from)??;
        Ok(Response::new(pb::StageTransitionResponse {
            transition: Some(convert::transition(&now)),
        }))
    }
}

/// The closing message of a log stream when job `id` has ended: the job as it ended (read once
/// its end is on disk). The log closes a moment before the job's end is stored, so a follower
/// waits for it (at most 30 s); a plain tail of a running job gets `None`.
async fn job_end(
    store: crate::store::Store,
    events: Arc<crate::events::EventHub>,
    id: String,
    follow: bool,
) -> Option<Result<pb::LogChunk, Status>> {
    let mut changes = events.subscribe();
    let give_up = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(give_up);
    loop {
        store.barrier().await.ok()?;
        let job: JobRecord = store.get_json(Tree::Jobs, id.as_bytes()).ok()??;
        if job.status.is_final() {
            return Some(Ok(pb::LogChunk {
                job_id: id,
                offset: 0,
                data: Vec::new(),
                stream: pb::LogStream::System as i32,
                step: job.steps_done,
                end: Some(convert::job(&job)),
            }));
        }
        if !follow {
            return None;
        }
        tokio::select! {
            change = changes.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = change {
                    return None;
                }
            }
            () = &mut give_up => return None,
        }
    }
}
