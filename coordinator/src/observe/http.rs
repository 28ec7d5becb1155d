//! The coordinator's HTTP port: `/metrics`, the dashboard and the small JSON API behind it.
//!
//! Every JSON route calls the gRPC service's own methods ([`PipelineApi`]), so the dashboard
//! shows exactly what `GetPipelineState`, `ListPipelineExecutions`, `WatchPipeline` and
//! `TailJobLog` return (new fields and waiting reasons show up without changes here). Live
//! updates are server-sent events fed by `WatchPipeline` and `TailJobLog` streams.
//!
//! Read-only, except `POST /api/executions/{id}/stop`, which goes through [`authorize`] (the
//! API token, when tokens are on).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_proto::v1 as pb;
use baton_proto::v1::pipeline_service_server::PipelineService;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::enum_word;
use super::metrics::Metrics;
use crate::api::pipeline_server::PipelineApi;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// What the HTTP handlers share.
pub struct HttpState {
    /// The gRPC service, called directly.
    pub api: Arc<PipelineApi>,
    /// The metrics `/metrics` writes.
    pub metrics: Arc<Metrics>,
    /// The API token actions must carry (`Authorization: Bearer`); reads need none.
    pub api_token: crate::api::auth::ApiToken,
}

/// Serves the HTTP routes on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Every route of the HTTP port.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript") }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE_CSS, "text/css") }),
        )
        .route("/metrics", get(metrics))
        .route("/api/enums", get(enums))
        .route("/api/pipelines", get(pipelines))
        .route("/api/pipelines/{name}/state", get(pipeline_state))
        .route("/api/pipelines/{name}/executions", get(executions))
        .route("/api/pipelines/{name}/events", get(pipeline_events))
        .route("/api/jobs/{id}/log", get(job_log))
        .route("/api/executions/{id}/stop", post(stop_execution))
        .with_state(state)
}

type Shared = State<Arc<HttpState>>;

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A gRPC status as an HTTP error with a JSON body `{"error": "..."}`.
fn error(status: tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({ "error": status.message() });
    (code, Json(body)).into_response()
}

fn json<T: serde::Serialize>(result: Result<tonic::Response<T>, tonic::Status>) -> Response {
    match result {
        Ok(response) => Json(response.into_inner()).into_response(),
        Err(status) => error(status),
    }
}

/// The one place an action's caller is checked: with API tokens on, actions carry the token
/// as gRPC calls do (`Authorization: Bearer TOKEN`); reads are open.
pub fn authorize(state: &HttpState, headers: &HeaderMap) -> Result<(), tonic::Status> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.api_token.check(header)
}

async fn metrics(State(state): Shared) -> Response {
    let text = state.metrics.render(&state.api).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Enum numbers to words (`{"ExecutionStatus": {"1": "InProgress"}}`), so the page needs no
/// copy of the .proto.
async fn enums() -> Response {
    fn table<E: TryFrom<i32>>(
        prefix: &str,
        name: fn(&E) -> &'static str,
    ) -> serde_json::Map<String, serde_json::Value> {
        (0..64)
            .filter_map(|n| E::try_from(n).ok().map(|e| (n, name(&e))))
            .map(|(n, s)| (n.to_string(), enum_word(s, prefix).into()))
            .collect()
    }
    Json(serde_json::json!({
        "ExecutionStatus": table("EXECUTION_STATUS_", pb::ExecutionStatus::as_str_name),
        "StageStatus": table("STAGE_STATUS_", pb::StageStatus::as_str_name),
        "JobStatus": table("JOB_STATUS_", pb::JobStatus::as_str_name),
        "ExecutionMode": table("EXECUTION_MODE_", pb::ExecutionMode::as_str_name),
        "WorkerState": table("WORKER_STATE_", pb::WorkerState::as_str_name),
        "LogStream": table("LOG_STREAM_", pb::LogStream::as_str_name),
    }))
    .into_response()
}

async fn pipelines(State(state): Shared) -> Response {
    json(
        state
            .api
            .list_pipelines(tonic::Request::new(pb::ListPipelinesRequest {}))
            .await,
    )
}

async fn pipeline_state(State(state): Shared, Path(name): Path<String>) -> Response {
    let request = pb::GetPipelineStateRequest { pipeline: name };
    json(
        state
            .api
            .get_pipeline_state(tonic::Request::new(request))
            .await,
    )
}

/// `?limit=N` (default 20).
#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn executions(
    State(state): Shared,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Response {
    let request = pb::ListPipelineExecutionsRequest {
        pipeline: name,
        limit: q.limit.unwrap_or(20),
    };
    json(
        state
            .api
            .list_pipeline_executions(tonic::Request::new(request))
            .await,
    )
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One SSE message per `WatchPipeline` event (its id is the event's sequence number); an `error`
/// message when the watch breaks. A browser that reconnects sends `Last-Event-ID` and gets the
/// events it missed first.
async fn pipeline_events(
    State(state): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let request = pb::WatchPipelineRequest {
        pipeline: name,
        since,
    };
    let events = match state.api.watch_pipeline(tonic::Request::new(request)).await {
        Ok(events) => events.into_inner(),
        Err(status) => return error(status),
    };
    sse(events.map(|event| {
        Ok(match event {
            Ok(event) => SseEvent::default()
                .id(event.seq.to_string())
                .event("change")
                .json_data(&event)
                .unwrap_or_default(),
            Err(status) => SseEvent::default().event("error").data(status.message()),
        })
    }))
}

/// The job's log so far, then live chunks until the job ends; an `end` message at the end
/// (with data: browsers drop messages without any) that says how the job ended.
async fn job_log(State(state): Shared, Path(id): Path<String>) -> Response {
    let request = pb::TailJobLogRequest {
        job_id: id,
        follow: true,
        offset: 0,
    };
    let chunks = match state.api.tail_job_log(tonic::Request::new(request)).await {
        Ok(chunks) => chunks.into_inner(),
        Err(status) => return error(status),
    };
    let chunks = chunks.map(|chunk| {
        Ok(match chunk {
            Ok(pb::LogChunk { end: Some(job), .. }) => {
                let status = pb::JobStatus::try_from(job.status)
                    .map(|s| enum_word(s.as_str_name(), "JOB_STATUS_"))
                    .unwrap_or_else(|_| job.status.to_string());
                SseEvent::default().event("end").data(format!(
                    "── job {status}: {}/{} steps, exit {} ──",
                    job.steps_done, job.step_count, job.exit_code
                ))
            }
            Ok(c) => SseEvent::default()
                .event("chunk")
                .json_data(serde_json::json!({
                    "offset": c.offset,
                    "step": c.step,
                    "stream": c.stream,
                    "text": String::from_utf8_lossy(&c.data),
                }))
                .unwrap_or_default(),
            Err(status) => SseEvent::default().event("error").data(status.message()),
        })
    });
    let end = futures::stream::once(async { Ok(SseEvent::default().event("end").data("end")) });
    sse(chunks.chain(end))
}

/// `?mode=abandon|wait` (default wait).
#[derive(serde::Deserialize)]
struct StopQuery {
    mode: Option<String>,
}

async fn stop_execution(
    State(state): Shared,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(status) = authorize(&state, &headers) {
        return error(status);
    }
    let mode = match q.mode.as_deref() {
        Some("abandon") => pb::StopMode::Abandon,
        _ => pb::StopMode::Wait,
    };
    let request = pb::StopPipelineExecutionRequest {
        execution_id: id,
        mode: mode as i32,
        reason: "stopped from the dashboard".into(),
    };
    json(
        state
            .api
            .stop_pipeline_execution(tonic::Request::new(request))
            .await,
    )
}
