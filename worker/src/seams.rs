//! What a worker can be given in place of the real thing, for simulations and embedding: how a
//! job is run ([`JobLauncher`]; the default runs its steps as processes) and how the channel to
//! the coordinator is opened ([`ChannelConnector`]; the default dials TCP). The session, the
//! lease and self-fencing are the same either way. The `baton-worker` binary launches jobs
//! with [`crate::SupervisedLauncher`], so that they survive a restart of the worker process.

use std::path::Path;
use std::sync::Arc;

use baton_proto::v1::JobSpec;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::runner::{self, JobContext, JobControl, Report};
use crate::spare_dir::SpareDir;

/// Runs one job to its end: reports on `reports`, ending with exactly one `Finished` (or
/// `Withdrawn`), and obeys `control`, as [`runner::run_job`] does.
pub trait JobLauncher: Send + Sync + 'static {
    /// The job, as a future the worker owns (dropping it must stop the job, or, for jobs
    /// that outlive the worker process, leave it to stop itself: see
    /// [`crate::SupervisedLauncher`]).
    fn launch(
        &self,
        job: JobSpec,
        ctx: JobContext,
        reports: mpsc::Sender<Report>,
        control: mpsc::Receiver<JobControl>,
    ) -> BoxFuture<'static, ()>;

    /// Jobs a previous process of this worker left under `work_dir` (still running, or ended
    /// with the end not yet applied by the coordinator), to be followed again; each reports
    /// on `reports` as a launched job does. Default: none (jobs die with their worker).
    fn left_behind(&self, work_dir: &Path, reports: mpsc::Sender<Report>) -> Vec<LeftBehind> {
        let _ = (work_dir, reports);
        Vec::new()
    }

    /// The coordinator has applied the job's end (or it was withdrawn): drop what was kept
    /// for a later worker process. Default: nothing kept.
    fn forget(&self, work_dir: &Path, job_id: &str) {
        let _ = (work_dir, job_id);
    }
}

/// A job found again by [`JobLauncher::left_behind`].
pub struct LeftBehind {
    /// The job.
    pub job_id: String,
    /// Signals for it.
    pub control: mpsc::Sender<JobControl>,
    /// Follows it to its end (as [`JobLauncher::launch`] does).
    pub run: BoxFuture<'static, ()>,
}

/// The real launcher: every step as `sh -c` in its own process group. A job's own directory
/// is made ahead, when the job before it ends (see `spare_dir.rs`).
#[derive(Debug, Default, Clone)]
pub struct ProcessLauncher {
    spare: SpareDir,
}

impl JobLauncher for ProcessLauncher {
    fn launch(
        &self,
        job: JobSpec,
        ctx: JobContext,
        reports: mpsc::Sender<Report>,
        control: mpsc::Receiver<JobControl>,
    ) -> BoxFuture<'static, ()> {
        let spare = self.spare.clone();
        Box::pin(async move {
            let work_dir = ctx.work_dir.clone();
            let own = work_dir.join(runner::dir_name(&job.job_id));
            if !own.exists() {
                spare.take_into(&own);
            }
            runner::run_job(job, ctx, reports, control).await;
            spare.refill(&work_dir);
        })
    }
}

/// Opens the channel to the coordinator for an endpoint (with the worker's keepalive and
/// timeouts already set on it).
pub type ChannelConnector = Arc<
    dyn Fn(Endpoint) -> BoxFuture<'static, Result<Channel, tonic::transport::Error>> + Send + Sync,
>;

/// The parts of a worker that can be replaced. Default: processes and TCP.
#[derive(Clone)]
pub struct Seams {
    /// Runs jobs. Default: [`ProcessLauncher`].
    pub launcher: Arc<dyn JobLauncher>,
    /// Opens the channel. Default: `None`, `Endpoint::connect` (TCP).
    pub connector: Option<ChannelConnector>,
}

impl Default for Seams {
    fn default() -> Self {
        Self {
            launcher: Arc::new(ProcessLauncher::default()),
            connector: None,
        }
    }
}

impl Seams {
    /// Opens the channel through the connector, or over TCP.
    pub(crate) async fn connect(
        &self,
        endpoint: Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        match &self.connector {
            Some(connect) => connect(endpoint).await,
            None => endpoint.connect().await,
        }
    }
}
