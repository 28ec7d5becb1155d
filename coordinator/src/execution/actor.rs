//! The pipeline actor: one per pipeline. It owns the pipeline's live executions and their
//! jobs, asks stage actors for lock decisions, persists each change in one batch, and only
//! then answers, dispatches and announces.
//!
//! Every message's stage questions are answered before the next message is looked at (a
//! handler queues them with `ctx.wait`). Its store batch is then queued behind the earlier
//! ones and the actor goes on with the next message while the batch flushes: batches land in
//! the order they were queued, and each one's replies, dispatches and announcements leave only
//! once it has landed ([`PipelineActor::landed`]). So many messages share one flush, and still
//! nothing is acknowledged, dispatched or announced before it is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;

use super::lanes::{LaneKey, stage_key};
use super::revision::EndedOrders;
use super::txn::{Txn, Work};
use crate::clock::SharedClock;
use crate::dispatcher::{Adopt, Cancel, Dispatcher, Enqueue, JobEvent, Signal};
use crate::error::CoordError;
use crate::events::EventHub;
use crate::pipeline::{PipelineSpec, parse_pipeline_file};
use crate::stage::actor::{Ask, AskAt, SetPolicy, StageActor};
use crate::stage::policy::StagePolicy;
use crate::stage::rules::{StageLock, Transition};
use crate::store::records::{
    ExecutionRecord, JobRecord, JobStatus, PipelineRecord, RequestTokenRecord, Revision,
    StageRecord,
};
use crate::store::{Op, Store, StoreError, Tree, key_num, key_num_suffix, key2, prefix};

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
    /// How often timers (approval timeouts) are checked against `clock`. Default: 1 s.
    pub timer_tick: std::time::Duration,
}

/// One pipeline's executions.
pub struct PipelineActor {
    pub(super) name: String,
    pub(super) version: u64,
    pub(super) spec: Arc<PipelineSpec>,
    /// Definitions by version, for executions pinned to older ones.
    pub(super) specs: HashMap<u64, Arc<PipelineSpec>>,
    /// Stage actors, one per stage and lane.
    pub(super) stages: HashMap<LaneKey, Addr<StageActor>>,
    /// The latest known state of each stage and lane (a mirror of the stage actors').
    pub(super) locks: HashMap<LaneKey, StageLock>,
    /// Each stage's transition, the same in every lane of it.
    pub(super) transitions: HashMap<String, Transition>,
    /// Executions that have not ended.
    pub(super) executions: HashMap<String, ExecutionRecord>,
    /// Jobs of those executions.
    pub(super) jobs: HashMap<String, JobRecord>,
    pub(super) next_number: u64,
    /// The sequence number the next event of this pipeline gets (durable, gapless).
    pub(super) next_seq: u64,
    /// Revision orders of ended executions that still outrank older arrivals.
    pub(super) ended_orders: EndedOrders,
    pub(super) shared: Shared,
    /// This actor's address for job reports (set when started).
    me: Option<Recipient<JobEvent>>,
    /// Batches queued to the store that have not all landed yet, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The number the next queued batch gets.
    next_batch: u64,
    /// Client request tokens whose execution is created but not yet durable: token -> id.
    pub(super) pending_tokens: HashMap<String, String>,
}

/// A batch queued to the store, with what to do once it has landed.
struct InFlight {
    batch: u64,
    txn: Txn,
    first_seq: u64,
    /// The store's answer, once it came.
    result: Option<Result<(), StoreError>>,
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
        // Only the executions that have not ended are read (a range scan), not the history;
        // what ended ones still decide is stored apart (ended revision orders).
        let next_number = store
            .scan_last(Tree::ExecutionIndex, &prefix(&record.name), 1)?
            .first()
            .and_then(|(k, _)| key_num_suffix(k))
            .map_or(1, |n| n + 1);
        let mut ended_orders = store
            .get_json::<Vec<(String, usize, u64)>>(Tree::EndedOrders, record.name.as_bytes())?
            .map(EndedOrders::from_entries)
            .unwrap_or_default();
        for (key, _) in store.scan_prefix(Tree::LiveExecutions, &prefix(&record.name))? {
            let id = String::from_utf8_lossy(&key[record.name.len() + 1..]).to_string();
            let Some(exec) = store.get_json::<ExecutionRecord>(Tree::Executions, id.as_bytes())?
            else {
                continue;
            };
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
        let next_seq = store
            .scan_last(Tree::Events, &prefix(&record.name), 1)?
            .first()
            .and_then(|(k, _)| key_num_suffix(k))
            .map_or(1, |n| n + 1);
        let mut locks = HashMap::new();
        let mut transitions = HashMap::new();
        for rec in store.scan_json::<StageRecord>(Tree::Stages, &prefix(&record.name))? {
            if rec.lane.is_empty() {
                transitions.insert(rec.stage.clone(), rec.lock.transition.clone());
            }
            locks.insert((rec.stage, rec.lane), rec.lock);
        }
        Ok(Self {
            name: record.name.clone(),
            version: record.version,
            spec,
            specs,
            stages: HashMap::new(),
            locks,
            transitions,
            executions,
            jobs,
            next_number,
            next_seq,
            ended_orders,
            shared,
            me: None,
            in_flight: VecDeque::new(),
            next_batch: 0,
            pending_tokens: HashMap::new(),
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

    /// The policy of stage `name` in the current definition.
    pub(super) fn policy_of(&self, name: &str) -> StagePolicy {
        self.spec
            .stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| StagePolicy::of(&self.spec, s))
            .unwrap_or_else(|| StagePolicy::of_mode(self.spec.mode))
    }

    fn stage_addr(&mut self, key: &LaneKey) -> Addr<StageActor> {
        if let Some(addr) = self.stages.get(key) {
            return addr.clone();
        }
        let policy = self.policy_of(&key.0);
        let mut lock = self.locks.get(key).cloned().unwrap_or_default();
        lock.transition = self.transitions.get(&key.0).cloned().unwrap_or_default();
        let addr = StageActor::new(policy, lock).start();
        self.stages.insert(key.clone(), addr.clone());
        addr
    }

    /// Asks the stage actors every queued question, then commits.
    pub(super) fn run(&mut self, mut txn: Txn, ctx: &mut Context<Self>) {
        let Some(work) = txn.work.pop_front() else {
            return self.commit(txn, ctx);
        };
        if let Ask::Arrive { execution_id, .. } = &work.ask
            && let Some(reason) = self.too_old_for(execution_id, &work.stage)
        {
            self.supersede_on_arrival(execution_id, &work.stage, reason, &mut txn);
            return self.run(txn, ctx);
        }
        let key = work.key();
        let addr = self.stage_addr(&key);
        let now = self.moment(&key);
        tracing::trace!(target: "baton::hop", "actor-ask");
        let ask = addr.send(AskAt {
            ask: work.ask.clone(),
            now,
        });
        ctx.wait(ask.into_actor(self).map(move |answer, act, ctx| {
            tracing::trace!(target: "baton::hop", "actor-answer");
            match answer {
                Ok(Ok(decision)) => act.apply_decision(&key, decision, &mut txn),
                Ok(Err(refused)) => {
                    if matches!(work.ask, Ask::Reenter { .. }) {
                        act.retry_refused(&work, &refused, &mut txn);
                    }
                    tracing::warn!(pipeline = %act.name, stage = %key.0, lane = %key.1, %refused, ask = ?work.ask, "stage refused")
                }
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
                let live = key2(&self.name, id);
                ops.push(if exec.status.is_final() {
                    Op::Delete(Tree::LiveExecutions, live)
                } else {
                    Op::Put(Tree::LiveExecutions, live, Vec::new())
                });
            }
        }
        txn.ended = txn
            .executions
            .iter()
            .filter(|id| {
                self.executions
                    .get(*id)
                    .is_some_and(|e| e.status.is_final())
            })
            .cloned()
            .collect();
        // Ended executions' revision orders are stored with the batch that ends them.
        let ending: Vec<&ExecutionRecord> = txn
            .executions
            .iter()
            .filter_map(|id| self.executions.get(id))
            .filter(|e| e.status.is_final() && e.revision.order != 0)
            .collect();
        if !ending.is_empty() {
            let mut orders = self.ended_orders.clone();
            for exec in ending {
                orders.record(&exec.revision.branch, exec);
            }
            ops.push(Op::put_json(
                Tree::EndedOrders,
                self.name.as_bytes(),
                &orders.to_entries(),
            ));
        }
        // Each event gets its number here and is stored in the same batch as its change.
        let first_seq = self.next_seq;
        for event in &mut txn.events {
            event.seq = self.next_seq;
            self.next_seq += 1;
            ops.push(Op::put_json(
                Tree::Events,
                key_num(&self.name, event.seq),
                &*event,
            ));
        }
        for id in &txn.jobs {
            if let Some(job) = self.jobs.get(id) {
                ops.push(Op::put_json(Tree::Jobs, id.as_bytes(), job));
            }
        }
        for key in &txn.stages {
            let (stage, lane) = key;
            let record = StageRecord {
                pipeline: self.name.clone(),
                stage: stage.clone(),
                lane: lane.clone(),
                lock: self.locks.get(key).cloned().unwrap_or_default(),
            };
            ops.push(Op::put_json(
                Tree::Stages,
                stage_key(&self.name, stage, lane),
                &record,
            ));
        }
        ops.append(&mut txn.writes);
        // Queued now, so batches land in the order their messages were handled.
        tracing::trace!(target: "baton::hop", "actor-commit");
        let landing = self.shared.store.write_queued(ops);
        let batch = self.next_batch;
        self.next_batch += 1;
        self.in_flight.push_back(InFlight {
            batch,
            txn,
            first_seq,
            result: None,
        });
        ctx.spawn(
            landing
                .into_actor(self)
                .map(move |result, act, ctx| act.landed(batch, result, ctx)),
        );
    }

    /// The store answered for `batch`: every batch at the front that has landed is done, in
    /// the order they were queued.
    fn landed(&mut self, batch: u64, result: Result<(), StoreError>, ctx: &mut Context<Self>) {
        tracing::trace!(target: "baton::hop", "actor-landed");
        if let Some(entry) = self.in_flight.iter_mut().find(|e| e.batch == batch) {
            entry.result = Some(result);
        }
        while self.in_flight.front().is_some_and(|e| e.result.is_some()) {
            let Some(entry) = self.in_flight.pop_front() else {
                break;
            };
            let result = entry.result.unwrap_or(Err(StoreError::Closed));
            self.after_commit(entry.txn, entry.first_seq, result, ctx);
        }
    }

    /// Replies with `value` once every batch queued before has landed (answers to questions
    /// about state that may not be durable yet wait for it).
    pub(super) fn reply_after_landing<T: Send + 'static>(
        &mut self,
        value: impl FnOnce(&PipelineActor) -> Result<T, CoordError> + Send + 'static,
        ctx: &mut Context<Self>,
    ) -> tokio::sync::oneshot::Receiver<Result<T, CoordError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut txn = Txn::default();
        reply_once(&mut txn, tx, value);
        self.commit(txn, ctx);
        rx
    }

    fn after_commit(
        &mut self,
        txn: Txn,
        first_seq: u64,
        result: Result<(), StoreError>,
        ctx: &mut Context<Self>,
    ) {
        if result.is_err() && self.in_flight.is_empty() {
            // Nothing of this batch is stored and none queued after it: its numbers are free.
            self.next_seq = first_seq;
        }
        for token in &txn.tokens {
            self.pending_tokens.remove(token);
        }
        if result.is_ok() {
            for (key, at_ms) in txn.timers {
                self.arm_timer(key, at_ms, ctx);
            }
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
        // Ended executions and their jobs leave memory once their end is durable.
        for id in txn.ended {
            // Unless a retry has brought it back since.
            if !self
                .executions
                .get(&id)
                .is_some_and(|e| e.status.is_final())
            {
                continue;
            }
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
        // Approvals wait for a person, never for a worker.
        if job.status != JobStatus::Queued || job.approval.is_some() {
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
        // Approval timeouts are measured with the injected clock, looked at on every tick.
        ctx.run_interval(self.shared.timer_tick, |_, ctx| {
            ctx.notify(super::approval::CheckApprovals);
        });
        let me = ctx.address().recipient::<JobEvent>();
        self.me = Some(me.clone());
        // Settle windows that were running when the coordinator stopped are asked again.
        let mut txn = Txn::default();
        for ((stage, lane), lock) in &self.locks {
            if !lock.waiting.is_empty() {
                txn.work
                    .push_back(Work::new(stage, lane, crate::stage::actor::Ask::Tick));
            }
        }
        self.run(txn, ctx);
        // Resume what was under way when the coordinator stopped.
        for job in self.jobs.values() {
            match job.status {
                JobStatus::Queued => self.enqueue(&job.id),
                JobStatus::Running if job.approval.is_none() => {
                    self.shared.dispatcher.do_send(Adopt {
                        job_id: job.id.clone(),
                        worker: job.worker.clone(),
                        route: me.clone(),
                    })
                }
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

/// A stage's state in one lane, with why each waiter waits.
#[derive(Debug, Clone)]
pub struct StageView {
    /// Stage name.
    pub stage: String,
    /// The lane ("" for the pipeline's single lane or a shared stage).
    pub lane: String,
    /// Its policy (effective mode and options).
    pub policy: StagePolicy,
    /// Its lock state.
    pub lock: StageLock,
    /// Why each of `lock.waiting` waits, in words, in the same order.
    pub reasons: Vec<String>,
}

/// A pipeline's state for `GetPipelineState`.
#[derive(Debug, Clone)]
pub struct StateView {
    /// Pipeline name.
    pub pipeline: String,
    /// Definition version.
    pub version: u64,
    /// Stages in order, each of its lanes in lane order.
    pub stages: Vec<StageView>,
    /// Every execution the stages name, by id.
    pub executions: HashMap<String, ExecutionRecord>,
    /// What a lock holder is held up by, in words, by execution id: "approval `x` pending
    /// since …, times out at …", a job no connected worker can take, or that auto-cancel ends
    /// it once its stage is done.
    pub holder_notes: HashMap<String, String>,
}

/// Asks for the pipeline's state.
#[derive(Message)]
#[rtype(result = "StateView")]
pub struct GetState;

pub(super) fn reply_once<T: Send + 'static>(
    txn: &mut Txn,
    tx: tokio::sync::oneshot::Sender<Result<T, CoordError>>,
    value: impl FnOnce(&PipelineActor) -> Result<T, CoordError> + Send + 'static,
) {
    txn.replies.push(Box::new(move |act, result| {
        let _ = tx.send(result.map_err(CoordError::from).and_then(|_| value(act)));
    }));
}

pub(super) async fn answer<T>(
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
        tracing::trace!(target: "baton::hop", "actor-start");
        let token = msg.client_request_token;
        if !token.is_empty() {
            // A retry racing the first call finds its token here while the first call's
            // batch is still flushing, and is answered once that batch has landed.
            if self.pending_tokens.contains_key(&token) {
                // Read back once landed: if the first call's batch failed, nothing started.
                let rx = self.reply_after_landing(
                    move |act| match act.earlier_start(&token)? {
                        Some(execution_id) => Ok(Started {
                            execution_id,
                            deduplicated: true,
                        }),
                        None => Err(CoordError::Unavailable),
                    },
                    ctx,
                );
                return Box::pin(answer(rx));
            }
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
        let _span =
            tracing::info_span!("execution", pipeline = %self.name, execution_id = %id).entered();
        tracing::debug!("execution created");
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
            self.pending_tokens.insert(token.clone(), id.clone());
            txn.tokens.push(token);
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
        tracing::trace!(target: "baton::hop", "actor-stop");
        let _span = tracing::info_span!("execution", pipeline = %self.name, execution_id = %msg.execution_id).entered();
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
        let _span =
            tracing::info_span!("job", pipeline = %self.name, job_id = %msg.job_id).entered();
        let mut txn = Txn::default();
        self.on_job_event(msg, &mut txn);
        self.run(txn, ctx);
    }
}

impl Handler<Redefine> for PipelineActor {
    type Result = ();
    fn handle(&mut self, msg: Redefine, ctx: &mut Context<Self>) {
        self.version = msg.record.version;
        self.specs.insert(msg.record.version, msg.spec.clone());
        self.spec = msg.spec;
        // A new policy (more capacity, no settle) may let waiting executions in now.
        let mut txn = Txn::default();
        for ((stage, lane), addr) in &self.stages {
            addr.do_send(SetPolicy(self.policy_of(stage)));
            txn.work
                .push_back(Work::new(stage, lane, crate::stage::actor::Ask::Tick));
        }
        self.run(txn, ctx);
    }
}

impl Handler<GetState> for PipelineActor {
    type Result = ResponseFuture<StateView>;
    fn handle(&mut self, _: GetState, ctx: &mut Context<Self>) -> Self::Result {
        let view = self.state_view();
        if self.in_flight.is_empty() {
            return Box::pin(async move { view });
        }
        // What the view shows is told only once it is durable.
        let landed = self.reply_after_landing(|_| Ok(()), ctx);
        Box::pin(async move {
            let _ = landed.await;
            view
        })
    }
}

impl PipelineActor {
    fn state_view(&self) -> StateView {
        let stages = self.stage_views();
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
        let mut holder_notes: HashMap<String, String> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .filter_map(|j| {
                let a = j.approval.as_ref()?;
                Some((
                    j.execution_id.clone(),
                    format!(
                        "approval `{}` {}",
                        j.action,
                        super::approval::pending_words(a).trim_start_matches("approval ")
                    ),
                ))
            })
            .collect();
        // A queued job that no connected worker can take says so (the dispatcher told it).
        for j in self.jobs.values() {
            if j.status == JobStatus::Queued && j.approval.is_none() && !j.message.is_empty() {
                holder_notes
                    .entry(j.execution_id.clone())
                    .or_insert_with(|| format!("`{}` cannot start: {}", j.action, j.message));
            }
        }
        for exec in self.executions.values() {
            if let Some(cancel) = exec.cancel.as_ref().filter(|c| c.at_boundary) {
                holder_notes.insert(
                    exec.id.clone(),
                    format!(
                        "finishing a non-interruptible stage, then {}",
                        cancel.reason
                    ),
                );
            }
        }
        StateView {
            pipeline: self.name.clone(),
            version: self.version,
            stages,
            executions,
            holder_notes,
        }
    }
}
