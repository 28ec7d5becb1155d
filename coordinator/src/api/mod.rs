//! The gRPC services: they translate protobuf to actor messages and records back to protobuf.
//! No rules live here.

pub mod agent_server;
pub mod auth;
pub mod convert;
mod fleet;
pub mod pipeline_server;
