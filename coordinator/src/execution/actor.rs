//! The pipeline actor: one per pipeline. It owns the pipeline's live executions and their
//! jobs, asks stage actors for lock decisions, persists each change in one batch, and only
//! then answers, dispatches and announces.
//!
//! Every message is handled to the end (stage answers and the store's flush included) before
//! the next one is looked at: a handler queues its work with `ctx.wait`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;

use super::revision::EndedOrders;
use super::txn::{Txn, Work};
use crate::clock::SharedClock;
use crate::dispatcher::{Adopt, Cancel, Dispatcher, Enqueue, JobEvent, Signal};
use crate::error::CoordError;
use crate::events::EventHub;
use crate::pipeline::{PipelineSpec, parse_pipeline_file};
use crate::stage::actor::{self as stage, Decision, StageActor};
use crate::stage::rules::StageLock;
use crate::store::records::{
    ExecutionRecord, JobRecord, JobStatus, PipelineRecord, RequestTokenRecord, Revision,
    StageRecord,
};
use crate::store::{Op, Store, StoreError, Tree, key_num, key2, prefix};

/// What every pipeline actor shares.
#[derive(Clone)]
pub struct Shared {
    /// The store.
    pub store: Store,
    /// The dispatcher.
    pub dispatcher: Addr<Dispatcher>,
    /// Watchers' events.
    pub events: Arc<EventHub>,
    /// Time.
    pub clock: SharedClock,
}

/// One pipeline's executions.
pub struct PipelineActor {
    pub(super) name: String,
    pub(super) version: u64,
    pub(super) spec: Arc<PipelineSpec>,
    /// Definitions by version, for executions pinned to older ones.
    pub(super) specs: HashMap<u64, Arc<PipelineSpec>>,
    pub(super) stages: HashMap<String, Addr<StageActor>>,
    /// The latest known state of each stage (a mirror of the stage actors').
    pub(super) locks: HashMap<String, StageLock>,
    /// Executions that have not ended.
    pub(super) executions: HashMap<String, ExecutionRecord>,
    /// Jobs of those executions.
    pub(super) jobs: HashMap<String, JobRecord>,
    pub(super) next_number: u64,
    /// Revision orders of ended executions that still outrank older arrivals.
    pub(super) ended_orders: EndedOrders,
    pub(super) shared: Shared,
    /// This actor's address for job reports (set when started).
    me: Option<Recipient<JobEvent>>,
}

fn load_err(e: impl std::fmt::Display) -> CoordError {
    CoordError::Store(StoreError::Engine(e.to_string()))
}

impl PipelineActor {
    /// Rebuilds a pipeline from the store (its record must exist).
    pub fn load(record: &PipelineRecord, shared: Shared) -> Result<Self, CoordError> {
        let store = &shared.store;
        let spec =
            Arc::new(parse_pipeline_file(&record.source_name, &record.yaml).map_err(load_err)?);
        let mut specs = HashMap::from([(record.version, spec.clone())]);
        let mut executions = HashMap::new();
        let mut jobs = HashMap::new();
        let mut next_number = 1;
        let mut ended_orders = EndedOrders::default();
        for (_, id) in store.scan_prefix(Tree::ExecutionIndex, &prefix(&record.name))? {
            let id = String::from_utf8_lossy(&id).to_string();
            let Some(exec) = store.get_json::<ExecutionRecord>(Tree::Executions, id.as_bytes())?
            else {
                continue;
            };
            next_number = next_number.max(exec.number + 1);
            if exec.status.is_final() {
                ended_orders.record(&exec.revision.branch, &exec);
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) =
                specs.entry(exec.pipeline_version)
                && let Some(yaml) = store.get(
                    Tree::PipelineVersions,
                    &key_num(&record.name, exec.pipeline_version),
                )?
            {
                let text = String::from_utf8_lossy(&yaml);
                slot.insert(Arc::new(
                    parse_pipeline_file(&record.source_name, &text).map_err(load_err)?,
                ));
            }
            for run in &exec.stages {
                for job_id in &run.jobs {
                    if let Some(job) = store.get_json::<JobRecord>(Tree::Jobs, job_id.as_bytes())? {
                        jobs.insert(job_id.clone(), job);
                    }
                }
            }
            executions.insert(id, exec);
        }
        let mut locks = HashMap::new();
        for rec in store.scan_json::<StageRecord>(Tree::Stages, &prefix(&record.name))? {
            locks.insert(rec.stage, rec.lock);
        }
        Ok(Self {
            name: record.name.clone(),
            version: record.version,
            spec,
            specs,
            stages: HashMap::new(),
            locks,
            executions,
            jobs,
            next_number,
            ended_orders,
            shared,
            me: None,
        })
    }

    pub(super) fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    pub(super) fn spec_of(&self, exec: &ExecutionRecord) -> Arc<PipelineSpec> {
        self.specs
            .get(&exec.pipeline_version)
            .cloned()
            .unwrap_or_else(|| self.spec.clone())
    }

    fn stage_addr(&mut self, name: &str) -> Addr<StageActor> {
        if let Some(addr) = self.stages.get(name) {
            return addr.clone();
        }
        let mode = self
            .spec
            .stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.effective_mode(self.spec.mode))
            .unwrap_or(self.spec.mode);
        let lock = self.locks.get(name).cloned().unwrap_or_default();
        let addr = StageActor::new(mode, lock).start();
        self.stages.insert(name.to_string(), addr.clone());
        addr
    }

    /// Asks the stage actors every queued question, then commits.
    pub(super) fn run(&mut self, mut txn: Txn, ctx: &mut Context<Self>) {
        let Some(work) = txn.work.pop_front() else {
            return self.commit(txn, ctx);
        };
        if let Work::Arrive {
            execution_id,
            stage,
        } = &work
            && let Some(reason) = self.too_old_for(execution_id, stage)
        {
            self.supersede_on_arrival(execution_id, stage, reason, &mut txn);
            return self.run(txn, ctx);
        }
        let addr = self.stage_addr(work.stage());
        let now = self.now();
        let ask: Pin<Box<dyn Future<Output = Result<Decision, MailboxError>>>> = match &work {
            Work::Arrive { execution_id, .. } => Box::pin(addr.send(stage::Arrive {
                execution_id: execution_id.clone(),
                now_ms: now,
            })),
            Work::Leave {
                execution_id,
                reason,
                ..
            } => Box::pin(addr.send(stage::Leave {
                execution_id: execution_id.clone(),
                reason: *reason,
                now_ms: now,
            })),
            Work::Withdraw { execution_id, .. } => Box::pin(addr.send(stage::Withdraw {
                execution_id: execution_id.clone(),
            })),
        };
        ctx.wait(ask.into_actor(self).map(move |answer, act, ctx| {
            match answer {
                Ok(decision) => act.apply_decision(work.stage(), decision, &mut txn),
                Err(e) => tracing::error!(pipeline = %act.name, error = %e, "stage actor is gone"),
            }
            act.run(txn, ctx);
        }));
    }

    fn commit(&mut self, mut txn: Txn, ctx: &mut Context<Self>) {
        let mut ops = Vec::new();
        for id in &txn.executions {
            if let Some(exec) = self.executions.get(id) {
                ops.push(Op::put_json(Tree::Executions, id.as_bytes(), exec));
                ops.push(Op::Put(
                    Tree::ExecutionIndex,
                    key_num(&self.name, exec.number),
                    id.as_bytes().to_vec(),
                ));
            }
        }
        for id in &txn.jobs {
            if let Some(job) = self.jobs.get(id) {
                ops.push(Op::put_json(Tree::Jobs, id.as_bytes(), job));
            }
        }
        for stage in &txn.stages {
            let record = StageRecord {
                pipeline: self.name.clone(),
                stage: stage.clone(),
                lock: self.locks.get(stage).cloned().unwrap_or_default(),
            };
            ops.push(Op::put_json(Tree::Stages, key2(&self.name, stage), &record));
        }
        ops.append(&mut txn.writes);
        let store = self.shared.store.clone();
        ctx.wait(
            async move { store.write(ops).await }
                .into_actor(self)
                .map(move |result, act, _| act.after_commit(txn, result)),
        );
    }

    fn after_commit(&mut self, txn: Txn, result: Result<(), StoreError>) {
        if result.is_ok() {
            for event in txn.events {
                self.shared.events.publish(event);
            }
            for id in &txn.cancel {
                self.shared.dispatcher.do_send(Cancel(id.clone()));
            }
            for id in &txn.enqueue {
                self.enqueue(id);
            }
            for (job_id, signal) in txn.signals {
                self.shared.dispatcher.do_send(Signal { job_id, signal });
            }
        } else if let Err(e) = &result {
            tracing::error!(pipeline = %self.name, error = %e, "could not persist a change");
        }
        for reply in txn.replies {
            reply(self, result.clone());
        }
        // Ended executions and their jobs leave memory once durable.
        let ended: Vec<String> = self
            .executions
            .iter()
            .filter(|(_, e)| e.status.is_final())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(exec) = self.executions.remove(&id) {
                self.ended_orders.record(&exec.revision.branch, &exec);
                for run in exec.stages {
                    for job in run.jobs {
                        self.jobs.remove(&job);
                    }
                }
            }
        }
    }

    fn enqueue(&self, job_id: &str) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        if job.status != JobStatus::Queued {
            return;
        }
        if let Some(route) = &self.me {
            self.shared.dispatcher.do_send(Enqueue {
                spec: super::flow::job_spec(job),
                labels: job.labels.clone(),
                route: route.clone(),
            });
        }
    }
}

impl Actor for PipelineActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        let me = ctx.address().recipient::<JobEvent>();
        self.me = Some(me.clone());
        // Resume what was under way when the coordinator stopped.
        for job in self.jobs.values() {
            match job.status {
                JobStatus::Queued => self.enqueue(&job.id),
                JobStatus::Running => self.shared.dispatcher.do_send(Adopt {
                    job_id: job.id.clone(),
                    worker: job.worker.clone(),
                    route: me.clone(),
                }),
                _ => {}
            }
        }
    }
}

/// How long a client request token keeps answering with the execution it started: 24 h.
pub const REQUEST_TOKEN_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Starts an execution; answers once it is durable.
#[derive(Message)]
#[rtype(result = "Result<Started, CoordError>")]
pub struct Start {
    /// The source revision.
    pub revision: Revision,
    /// Idempotency key; empty = none.
    pub client_request_token: String,
}

/// The answer to [`Start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The execution.
    pub execution_id: String,
    /// True when the token matched an earlier call and nothing new started.
    pub deduplicated: bool,
}

/// How to stop an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Running jobs finish their current step; nothing new starts.
    Wait,
    /// Running jobs are terminated.
    Abandon,
}

/// Stops an execution; answers with it once the stop is durable.
#[derive(Message)]
#[rtype(result = "Result<ExecutionRecord, CoordError>")]
pub struct Stop {
    /// The execution.
    pub execution_id: String,
    /// Wait or abandon.
    pub mode: StopMode,
    /// Why, in the person's words.
    pub reason: String,
}

/// Installs a new definition version.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Redefine {
    /// The stored record.
    pub record: PipelineRecord,
    /// Its parsed definition.
    pub spec: Arc<PipelineSpec>,
}

/// A stage's state with the executions it names.
#[derive(Debug, Clone)]
pub struct StageView {
    /// Stage name.
    pub stage: String,
    /// Its effective mode.
    pub mode: crate::pipeline::Mode,
    /// Its lock state.
    pub lock: StageLock,
}

/// A pipeline's state for `GetPipelineState`.
#[derive(Debug, Clone)]
pub struct StateView {
    /// Pipeline name.
    pub pipeline: String,
    /// Definition version.
    pub version: u64,
    /// Stages in order.
    pub stages: Vec<StageView>,
    /// Every execution the stages name, by id.
    pub executions: HashMap<String, ExecutionRecord>,
}

/// Asks for the pipeline's state.
#[derive(Message)]
#[rtype(result = "StateView")]
pub struct GetState;

fn reply_once<T: 'static>(
    txn: &mut Txn,
    tx: tokio::sync::oneshot::Sender<Result<T, CoordError>>,
    value: impl FnOnce(&PipelineActor) -> Result<T, CoordError> + 'static,
) {
    txn.replies.push(Box::new(move |act, result| {
        let _ = tx.send(result.map_err(CoordError::from).and_then(|_| value(act)));
    }));
}

async fn answer<T>(
    rx: tokio::sync::oneshot::Receiver<Result<T, CoordError>>,
) -> Result<T, CoordError> {
    rx.await.map_err(|_| CoordError::Unavailable)?
}

impl PipelineActor {
    /// The execution an earlier call with this token started, while the token is retained.
    fn earlier_start(&self, token: &str) -> Result<Option<String>, CoordError> {
        let key = key2(&self.name, token);
        let earlier = self
            .shared
            .store
            .get_json::<RequestTokenRecord>(Tree::RequestTokens, &key)?;
        Ok(earlier
            .filter(|r| self.now() - r.at_ms < REQUEST_TOKEN_RETENTION_MS)
            .map(|r| r.execution_id))
    }
}

impl Handler<Start> for PipelineActor {
    type Result = ResponseFuture<Result<Started, CoordError>>;
    fn handle(&mut self, msg: Start, ctx: &mut Context<Self>) -> Self::Result {
        let token = msg.client_request_token;
        if !token.is_empty() {
            // Messages are handled one at a time to the end, so a retry racing the first
            // call finds the token once the first call has committed.
            match self.earlier_start(&token) {
                Ok(Some(execution_id)) => {
                    return Box::pin(async move {
                        Ok(Started {
                            execution_id,
                            deduplicated: true,
                        })
                    });
                }
                Ok(None) => {}
                Err(e) => return Box::pin(async move { Err(e) }),
            }
        }
        let mut txn = Txn::default();
        let id = self.create_execution(msg.revision, &mut txn);
        if !token.is_empty() {
            let record = RequestTokenRecord {
                execution_id: id.clone(),
                at_ms: self.now(),
            };
            txn.writes.push(Op::put_json(
                Tree::RequestTokens,
                key2(&self.name, &token),
                &record,
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        reply_once(&mut txn, tx, move |_| {
            Ok(Started {
                execution_id: id,
                deduplicated: false,
            })
        });
        self.run(txn, ctx);
        Box::pin(answer(rx))
    }
}

impl Handler<Stop> for PipelineActor {
    type Result = ResponseFuture<Result<ExecutionRecord, CoordError>>;
    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let mut txn = Txn::default();
        if let Err(e) = self.stop(&msg.execution_id, msg.mode, &msg.reason, &mut txn) {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = msg.execution_id;
        let store = self.shared.store.clone();
        reply_once(&mut txn, tx, move |act| match act.executions.get(&id) {
            Some(exec) => Ok(exec.clone()),
            None => store
                .get_json(Tree::Executions, id.as_bytes())?
                .ok_or_else(|| CoordError::NotFound(format!("execution {id} not found"))),
        });
        self.run(txn, ctx);
        Box::pin(answer(rx))
    }
}

impl Handler<JobEvent> for PipelineActor {
    type Result = ();
    fn handle(&mut self, msg: JobEvent, ctx: &mut Context<Self>) {
        let mut txn = Txn::default();
        self.on_job_event(msg, &mut txn);
        self.run(txn, ctx);
    }
}

impl Handler<Redefine> for PipelineActor {
    type Result = ();
    fn handle(&mut self, msg: Redefine, _: &mut Context<Self>) {
        self.version = msg.record.version;
        self.specs.insert(msg.record.version, msg.spec.clone());
        for s in &msg.spec.stages {
            if let Some(addr) = self.stages.get(&s.name) {
                addr.do_send(stage::SetMode(s.effective_mode(msg.spec.mode)));
            }
        }
        self.spec = msg.spec;
    }
}

impl Handler<GetState> for PipelineActor {
    type Result = MessageResult<GetState>;
    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        let stages: Vec<StageView> = self
            .spec
            .stages
            .iter()
            .map(|s| StageView {
                stage: s.name.clone(),
                mode: s.effective_mode(self.spec.mode),
                lock: self.locks.get(&s.name).cloned().unwrap_or_default(),
            })
            .collect();
        let mut executions = HashMap::new();
        for view in &stages {
            let named = view
                .lock
                .holders
                .iter()
                .map(|h| &h.execution_id)
                .chain(view.lock.waiting.iter().map(|w| &w.execution_id))
                .chain(view.lock.last_outcome.iter().map(|o| &o.execution_id));
            for id in named {
                let exec = match self.executions.get(id) {
                    Some(e) => Some(e.clone()),
                    None => self
                        .shared
                        .store
                        .get_json::<ExecutionRecord>(Tree::Executions, id.as_bytes())
                        .ok()
                        .flatten(),
                };
                if let Some(exec) = exec {
                    executions.insert(id.clone(), exec);
                }
            }
        }
        MessageResult(StateView {
            pipeline: self.name.clone(),
            version: self.version,
            stages,
            executions,
        })
    }
}
