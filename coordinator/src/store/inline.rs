//! A store without a writer thread, for deterministic simulations: every request is applied on
//! the caller's thread, in call order, before the call returns. Same answers as the threaded
//! writer (each write is atomic and durable, as far as its engine is, before it is answered),
//! without the thread whose timing a simulation cannot control.

use std::sync::Arc;

use super::{Engine, Request, Store, StoreError};

impl Store {
    /// A store over `engine` that applies writes where they are made, with no writer thread.
    ///
    /// Meant for the in-memory engine in simulations: a slow engine would block the caller.
    pub fn start_inline(engine: Arc<dyn Engine>) -> Store {
        Store {
            engine,
            writer: None,
        }
    }

    /// Hands `request` to the writer thread, or applies it here for an inline store.
    pub(super) fn submit(&self, request: Request) -> Result<(), StoreError> {
        let Some(writer) = &self.writer else {
            match request {
                Request::Write(write) => {
                    let result = self.engine.apply(&write.ops);
                    let _ = write.done.send(result);
                }
                Request::Exclusive(work) => work(self.engine.as_ref()),
            }
            return Ok(());
        };
        writer.send(request).map_err(|_| StoreError::Closed)
    }
}
