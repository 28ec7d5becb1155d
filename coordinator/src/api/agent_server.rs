//! `AgentService.Session`: one bidirectional stream per worker. The first message must be a
//! `Register`; everything after it goes to the dispatcher, which drops reports (log chunks
//! included) about jobs the worker does not hold.

use std::pin::Pin;
use std::time::Duration;

use actix::Addr;
use baton_proto::v1::{self as pb, agent_service_server::AgentService, worker_message::Msg};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::dispatcher::{Connected, Disconnected, Dispatcher, FromSession};

/// The worker protocol.
pub struct AgentApi {
    /// Where sessions are registered.
    pub dispatcher: Addr<Dispatcher>,
    /// Heartbeat interval told to workers.
    pub heartbeat_interval: Duration,
    /// Lease told to workers.
    pub lease: Duration,
    /// Ends every session when the coordinator shuts down.
    pub shutdown: CancellationToken,
    /// What a worker must show to register.
    pub auth: super::auth::WorkerAuth,
    /// Longest log chunk kept; longer ones are cut with a note. Default: 64 KiB.
    pub max_log_chunk_bytes: usize,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SessionStream = Outbound;

    async fn session(
        &self,
        req: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let auth = self.auth.clone();
        let (metadata, extensions, mut inbound) = req.into_parts();
        let peer = Request::from_parts(metadata, extensions, ());
        let register = match inbound.message().await? {
            Some(pb::WorkerMessage {
                msg: Some(Msg::Register(r)),
                ..
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Register",
                ));
            }
        };
        auth.check(&peer, &register.token)?;
        if register.name.is_empty() {
            return Err(Status::invalid_argument("Register needs a worker name"));
        }
        let name = register.name.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let registered = pb::Registered {
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            lease_ms: self.lease.as_millis() as u64,
            resume_after: 0,
        };
        let session = self
            .dispatcher
            .send(Connected {
                register,
                registered,
                tx,
            })
            .await
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        let dispatcher = self.dispatcher.clone();
        let shutdown = self.shutdown.clone();
        let max_chunk = self.max_log_chunk_bytes;
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = inbound.message() => next,
                    _ = shutdown.cancelled() => break,
                };
                match next {
                    Ok(Some(pb::WorkerMessage {
                        msg: Some(msg),
                        seq,
                    })) => {
                        // A chunk over the limit is cut here, with a note in the log.
                        let msg = match msg {
                            Msg::Log(mut log) => {
                                log.data = cut_chunk(std::mem::take(&mut log.data), max_chunk);
                                Msg::Log(log)
                            }
                            other => other,
                        };
                        dispatcher.do_send(FromSession {
                            worker: name.clone(),
                            session,
                            seq,
                            msg,
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            dispatcher.do_send(Disconnected {
                worker: name,
                session,
            });
        });
        let outbound = futures::StreamExt::take_until(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok),
            self.shutdown.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Keeps at most `max` bytes of a log chunk and says, in the log itself, what was cut.
fn cut_chunk(mut data: Vec<u8>, max: usize) -> Vec<u8> {
    if data.len() <= max {
        return data;
    }
    let cut = data.len() - max;
    data.truncate(max);
    data.extend_from_slice(
        format!("\n[baton: {cut} bytes of this log chunk were dropped: chunks are limited to {max} bytes (max_log_chunk_bytes)]\n").as_bytes(),
    );
    data
}
