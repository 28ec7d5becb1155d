//! Baton's wire types and gRPC stubs (`baton.v1`), generated at build time.
//!
//! `PipelineService` is the client API; `AgentService` is the worker protocol.

#![allow(missing_docs, clippy::all)]

/// Generated code for the `baton.v1` package.
pub mod v1 {
    tonic::include_proto!("baton.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("baton_descriptor");

pub use v1::*;
