//! Baton's coordinator as a library: pipelines, stage locks, executions, the worker fleet and
//! the durable store, served over gRPC. `main.rs`, `baton up` and the tests all call [`run`].

pub mod actor_home;
pub mod api;
pub mod backup;
pub mod bench;
pub mod clock;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod events;
pub mod execution;
pub mod in_process;
pub mod logs;
pub mod observe;
pub mod pipeline;
pub mod registry;
pub mod retention;
mod server;
pub mod stage;
pub mod store;

pub use config::{CoordinatorConfig, Retention};
pub use server::{StartError, run, run_with_clock, run_with_listeners};
