//! A TCP proxy the test controls, between a worker and the coordinator: `cut` drops every
//! connection and refuses new ones (a network partition as the worker sees it: its stream
//! breaks and it cannot reconnect), `silence` keeps the connections open but lets no byte
//! through (a partition nobody reports: only timeouts can notice it), `repair` lets
//! connections through again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<AbortHandle>,
    /// While set, bytes read from either side are dropped.
    silent: Arc<AtomicBool>,
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
            while let Ok((inbound, _)) = listener.accept().await {
                if lock(&shared).cut {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let silent = lock(&shared).silent.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        let (from_worker, to_worker) = inbound.into_split();
                        let (from_coordinator, to_coordinator) = outbound.into_split();
                        tokio::select! {
                            () = forward(from_worker, to_coordinator, silent.clone()) => {}
                            () = forward(from_coordinator, to_worker, silent) => {}
                        }
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

    /// Keeps every connection open but drops every byte either side sends, and refuses new
    /// connections, until [`Self::repair`].
    pub fn silence(&self) {
        let mut st = lock(&self.state);
        st.silent.store(true, Ordering::SeqCst);
        st.cut = true;
    }

    /// Lets connections through again. Connections that were silenced lost bytes, so they
    /// are dropped (as TCP would reset them once the partition heals).
    pub fn repair(&self) {
        let mut st = lock(&self.state);
        if st.silent.swap(false, Ordering::SeqCst) {
            st.connections.drain(..).for_each(|c| c.abort());
        }
        st.cut = false;
    }
}

/// Copies bytes from `from` to `to`, dropping them while `silent` is set.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
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
