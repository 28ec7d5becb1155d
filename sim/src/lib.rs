//! Deterministic simulation of Baton's coordinator and workers under partitions and crashes.
//!
//! [turmoil](https://docs.rs/turmoil) runs every host on its own single-threaded tokio runtime
//! with a `LocalSet`, a paused clock that the simulation moves, and a simulated network. The
//! coordinator host runs the real tonic services and actix actors over an in-memory store
//! ([`baton_coordinator::in_process`]); worker hosts run the real worker session (leases,
//! reconnects, self-fencing) with simulated jobs ([`job::SimLauncher`]); a driver host pushes
//! revisions. [`scenario::run`] injects seeded faults and [`check::violations`] checks that no
//! two jobs of one stage lock act at once, nor with a stale fence token.

pub mod check;
pub mod clock;
pub mod job;
pub mod net;
pub mod rng;
pub mod scenario;
