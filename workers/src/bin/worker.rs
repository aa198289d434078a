//! `worker`: one engine worker process serving the `Worker` gRPC service
//! (`proto/proto/worker.proto`) for one device / tensor-parallel rank.
//!
//! ```text
//! worker --listen 127.0.0.1:0 [--ready-file PATH] [--parent-pid PID]
//! ```
//!
//! Once bound it prints `LISTENING <addr>` on stdout (and writes `<addr>`
//! to `--ready-file` if given), so a parent that asked for port 0 learns
//! the port. It exits after answering `Shutdown`, and, with
//! `--parent-pid`, as soon as that process is no longer its parent (it
//! polls `getppid` twice a second): an engine that dies never leaves
//! workers behind holding GPU memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use proto::worker::worker_server::WorkerServer;
use tonic::transport::server::TcpIncoming;
use workers::grpc::WorkerService;

#[derive(Debug, Parser)]
#[command(about = "Engine worker: serves the Worker gRPC service for one rank")]
struct Args {
    /// Address to bind; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File to write the bound address to once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Exit when this process stops being the parent (it died).
    #[arg(long)]
    parent_pid: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args))?;
    // Blocking tasks (a step in flight) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let incoming = TcpIncoming::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().context("reading the bound address")?;
    if let Some(path) = &args.ready_file {
        std::fs::write(path, addr.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // stdout carries only this line; errors go to stderr.
    println!("LISTENING {addr}");
    std::io::Write::flush(&mut std::io::stdout()).ok();

    let (service, mut shutdown) = WorkerService::new().context("starting the model thread")?;
    let parent = args.parent_pid;
    let stop = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    if let Some(pid) = parent {
                        // SAFETY: getppid has no preconditions.
                        if unsafe { libc::getppid() } as u32 != pid {
                            eprintln!("worker: parent {pid} is gone, exiting");
                            break;
                        }
                    }
                }
            }
        }
        // Let the Shutdown reply reach the client.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            WorkerServer::new(service)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        )
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .context("serving")?;
    Ok(())
}
