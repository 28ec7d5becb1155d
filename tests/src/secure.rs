//! Helpers for TLS and token tests: certificates made at test time with rcgen (never committed),
//! and a coordinator started with any [`CoordinatorConfig`].

use std::path::{Path, PathBuf};

use baton_coordinator::CoordinatorConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A CA with a server certificate (for `localhost` and `127.0.0.1`) and a client certificate,
/// written as PEM files into a temporary directory.
pub struct TestPki {
    /// Holds the files.
    pub dir: tempfile::TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate and key.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Makes a fresh CA and certificates; `name` tells two CAs apart.
    pub fn new(name: &str) -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("Baton test CA {name}"));
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(sans).expect("params");
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into(), "coordinator".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["worker".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |file: &str, text: &str| {
            let path = dir.path().join(file);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        TestPki {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
            dir,
        }
    }

    /// Copies every file into `dir` (for containers that mount it).
    pub fn copy_to(&self, dir: &Path) {
        for file in [
            "ca.pem",
            "server.pem",
            "server-key.pem",
            "client.pem",
            "client-key.pem",
        ] {
            std::fs::copy(self.dir.path().join(file), dir.join(file)).expect("copy pem");
        }
    }
}

/// A coordinator started with a given configuration on `127.0.0.1:0`.
pub struct RunningCoordinator {
    /// `127.0.0.1:PORT`.
    pub local: std::net::SocketAddr,
    /// The HTTP port (dashboard, `/metrics`) when started with [`Self::start_with_http`].
    pub http: Option<std::net::SocketAddr>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), baton_coordinator::StartError>>,
}

impl RunningCoordinator {
    /// Binds `127.0.0.1:0` and runs the coordinator with `config`.
    pub async fn start(config: CoordinatorConfig) -> RunningCoordinator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn(baton_coordinator::run(config, listener, stop.clone()));
        RunningCoordinator {
            local,
            http: None,
            stop,
            task,
        }
    }

    /// [`Self::start`] with the HTTP port on `127.0.0.1:0` too.
    pub async fn start_with_http(config: CoordinatorConfig) -> RunningCoordinator {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listener = bind().await.expect("bind");
        let http = bind().await.expect("bind http");
        let local = listener.local_addr().expect("local addr");
        let http_addr = http.local_addr().expect("http addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn(baton_coordinator::run_with_listeners(
            config,
            listener,
            Some(http),
            stop.clone(),
            std::sync::Arc::new(baton_coordinator::clock::SystemClock),
        ));
        crate::wait_serving(&format!("http://{local}")).await;
        RunningCoordinator {
            local,
            http: Some(http_addr),
            stop,
            task,
        }
    }

    /// Stops it and waits until the store is closed.
    pub async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(crate::DEADLINE, self.task)
            .await
            .expect("coordinator stops");
        ended.expect("coordinator task").expect("coordinator ran");
    }
}
