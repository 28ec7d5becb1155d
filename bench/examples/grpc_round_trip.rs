//! How much of a round trip on this machine is the gRPC stack, and how much of that depends on
//! the tokio runtime around it: a gRPC health check between two processes on loopback, with
//! the server and the client each on a multi-thread or a current-thread runtime, next to a
//! plain TCP echo of one byte. Each call comes after `--idle-ms` of quiet (default 30), as in
//! `baton-bench cancel-latency`, since on a VM whose idle vCPUs halt that is what costs.
//!
//! ```text
//! cargo run --release -p baton-bench --example grpc_round_trip -- [--runs 200] [--idle-ms 30]
//! ```
//!
//! The server is this program again (`serve-grpc FLAVOR` or `serve-tcp`), printing its port.

/// The percentiles every `baton-bench` scenario reports (the bench is a binary crate, so the
/// file is shared by path); its table is not used here.
#[path = "../src/stats.rs"]
#[allow(dead_code)]
mod stats;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use stats::percentile;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The runtimes compared; `spawned` runs the client's calls in a spawned task instead of on
/// the thread blocked in `block_on`.
#[derive(Clone, Copy)]
enum Flavor {
    MultiThread,
    MultiThreadSpawned,
    CurrentThread,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::MultiThread => "multi-thread",
            Flavor::MultiThreadSpawned => "multi-thread, calls in a spawned task",
            Flavor::CurrentThread => "current-thread",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Flavor> {
        match s {
            "multi-thread" => Ok(Flavor::MultiThread),
            "current-thread" => Ok(Flavor::CurrentThread),
            other => bail!("unknown runtime {other:?}: multi-thread or current-thread"),
        }
    }

    fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve-grpc") => {
            let flavor = Flavor::parse(args.get(1).map_or("", String::as_str))?;
            return serve_grpc(flavor);
        }
        Some("serve-tcp") => return serve_tcp(),
        _ => {}
    }
    let mut runs = 200usize;
    let mut idle_ms = 30u64;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--runs" => runs = value.parse().context("--runs: a number")?,
            "--idle-ms" => idle_ms = value.parse().context("--idle-ms: a number")?,
            other => bail!("unknown argument {other:?}: --runs N, --idle-ms MS"),
        }
    }
    let idle = Duration::from_millis(idle_ms);
    println!("round trip on loopback, {runs} calls, {idle_ms} ms quiet before each: p50 (p90)");
    let (server, port) = start_server(&["serve-tcp"])?;
    let tcp = tcp_round_trips(port, runs, idle);
    stop(server);
    println!(
        "  plain TCP, one byte each way (blocking sockets): {}",
        summary(&tcp?)
    );
    for server_flavor in [Flavor::MultiThread, Flavor::CurrentThread] {
        let (server, port) = start_server(&["serve-grpc", server_flavor.name()])?;
        for client in [
            Flavor::MultiThread,
            Flavor::MultiThreadSpawned,
            Flavor::CurrentThread,
        ] {
            let times = grpc_round_trips(client, port, runs, idle);
            println!(
                "  gRPC health check, server {}, client {}: {}",
                server_flavor.name(),
                client.name(),
                summary(&times?)
            );
        }
        stop(server);
    }
    Ok(())
}

/// Starts this program as a server and reads the port it prints.
fn start_server(args: &[&str]) -> anyhow::Result<(Child, u16)> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the server")?;
    let out = child.stdout.take().context("the server has no stdout")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .context("cannot read the server's port")?;
    let port = line
        .trim()
        .parse()
        .with_context(|| format!("the server printed {line:?}, not a port"))?;
    Ok((child, port))
}

fn stop(mut server: Child) {
    let _ = server.kill();
    let _ = server.wait();
}

fn serve_grpc(flavor: Flavor) -> anyhow::Result<()> {
    flavor.runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        let (_reporter, service) = tonic_health::server::health_reporter();
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}

fn serve_tcp() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    let (mut conn, _) = listener.accept()?;
    conn.set_nodelay(true)?;
    let mut byte = [0u8; 1];
    while conn.read(&mut byte)? == 1 {
        conn.write_all(&byte)?;
    }
    Ok(())
}

fn tcp_round_trips(port: u16, runs: usize, idle: Duration) -> anyhow::Result<Vec<f64>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_nodelay(true)?;
    let mut times = Vec::with_capacity(runs);
    let mut byte = [0u8; 1];
    for _ in 0..runs {
        std::thread::sleep(idle);
        let start = Instant::now();
        conn.write_all(b"x")?;
        conn.read_exact(&mut byte)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

fn grpc_round_trips(
    flavor: Flavor,
    port: u16,
    runs: usize,
    idle: Duration,
) -> anyhow::Result<Vec<f64>> {
    let calls = async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            tokio::time::sleep(idle).await;
            let start = Instant::now();
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        anyhow::Ok(times)
    };
    flavor.runtime()?.block_on(async move {
        match flavor {
            Flavor::MultiThreadSpawned => tokio::spawn(calls).await?,
            _ => calls.await,
        }
    })
}

fn summary(times: &[f64]) -> String {
    if times.is_empty() {
        return "no calls".into();
    }
    format!(
        "{:.3} ms ({:.3})",
        percentile(times, 50.0),
        percentile(times, 90.0)
    )
}
