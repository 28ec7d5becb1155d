//! Where the coordinator's actors run: on an actix arbiter (the coordinator's own actor thread),
//! or on the `LocalSet` of the task that serves (a simulated host, which has one thread and no
//! actix `System`).
//!
//! actix-rt offers no public way to make an `ArbiterHandle` for an existing `LocalSet`, so a
//! local home is a channel whose runner task, spawned on that `LocalSet`, starts each actor there.

use std::future::Future;

use actix::dev::channel;
use actix::prelude::*;
use tokio::sync::mpsc;

/// A deferred actor start, run where the actor will live.
type Starter = Box<dyn FnOnce() + Send>;

/// Where new actors are started. Cheap to clone; usable from any task.
#[derive(Clone)]
pub enum ActorHome {
    /// An actix arbiter (its own thread).
    Arbiter(ArbiterHandle),
    /// The `LocalSet` that runs the future from [`ActorHome::local`].
    Local(mpsc::UnboundedSender<Starter>),
}

impl From<ArbiterHandle> for ActorHome {
    fn from(arbiter: ArbiterHandle) -> Self {
        ActorHome::Arbiter(arbiter)
    }
}

impl ActorHome {
    /// A home on the current `LocalSet`: spawn the returned future there (`spawn_local`); actors
    /// start once it runs and stop when it is dropped with the `LocalSet`.
    pub fn local() -> (ActorHome, impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Starter>();
        let runner = async move {
            while let Some(start) = rx.recv().await {
                start();
            }
        };
        (ActorHome::Local(tx), runner)
    }

    /// Starts the actor made by `make` in this home; its address is usable at once.
    pub fn start<A, F>(&self, make: F) -> Addr<A>
    where
        A: Actor<Context = Context<A>>,
        F: FnOnce(&mut Context<A>) -> A + Send + 'static,
    {
        match self {
            ActorHome::Arbiter(arbiter) => A::start_in_arbiter(arbiter, make),
            ActorHome::Local(starters) => {
                // What `start_in_arbiter` does, with our channel in place of the arbiter's.
                let (tx, rx) = channel::channel(16);
                let _ = starters.send(Box::new(move || {
                    let mut ctx = Context::with_receiver(rx);
                    let actor = make(&mut ctx);
                    actix_rt::spawn(ctx.into_future(actor));
                }));
                Addr::new(tx)
            }
        }
    }
}
