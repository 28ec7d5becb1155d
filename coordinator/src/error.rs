//! The coordinator's one error type, mapped to `tonic::Status` in one place.

use crate::store::StoreError;

/// Everything a coordinator call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// No such pipeline, execution or job.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (a bad pipeline file, a missing field).
    #[error("{0}")]
    Invalid(String),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// An actor is gone (the coordinator is shutting down).
    #[error("the coordinator is shutting down")]
    Unavailable,
}

impl From<actix::MailboxError> for CoordError {
    fn from(_: actix::MailboxError) -> Self {
        CoordError::Unavailable
    }
}

impl From<CoordError> for tonic::Status {
    fn from(e: CoordError) -> Self {
        let msg = e.to_string();
        match e {
            CoordError::NotFound(_) => tonic::Status::not_found(msg),
            CoordError::Invalid(_) => tonic::Status::invalid_argument(msg),
            CoordError::Precondition(_) => tonic::Status::failed_precondition(msg),
            CoordError::Store(_) => tonic::Status::internal(msg),
            CoordError::Unavailable => tonic::Status::unavailable(msg),
        }
    }
}
