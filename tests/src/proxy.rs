//! A TCP proxy the test controls, between a worker and the coordinator: `cut` drops every
//! connection and refuses new ones (a network partition as the worker sees it: its stream
//! breaks and it cannot reconnect), `repair` lets connections through again.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<AbortHandle>,
}

/// A proxy to one coordinator. Stops when dropped.
pub struct CutProxy {
    /// `http://127.0.0.1:PORT`: point a worker here.
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

fn lock(state: &Mutex<ProxyState>) -> std::sync::MutexGuard<'_, ProxyState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl CutProxy {
    /// A proxy in front of `target` (`http://host:port`).
    pub async fn start(target: &str) -> CutProxy {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if lock(&shared).cut {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut st = lock(&shared);
                st.connections.retain(|c| !c.is_finished());
                st.connections.push(pipe.abort_handle());
            }
        });
        CutProxy {
            addr,
            state,
            accept,
        }
    }

    /// Drops every connection through the proxy and refuses new ones until [`Self::repair`].
    pub fn cut(&self) {
        let mut st = lock(&self.state);
        st.cut = true;
        st.connections.drain(..).for_each(|c| c.abort());
    }

    /// Lets connections through again.
    pub fn repair(&self) {
        lock(&self.state).cut = false;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        lock(&self.state)
            .connections
            .drain(..)
            .for_each(|c| c.abort());
    }
}
