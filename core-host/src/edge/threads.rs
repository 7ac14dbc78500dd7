//! The threads that serve the public port's connections: each runs a
//! single-threaded tokio runtime of its own, for the life of the process,
//! and a connection stays on the thread it was given, with every task its
//! requests spawn (the gateway instance, wasi-http's request and I/O tasks).
//!
//! On tokio's work-stealing runtime a request's next step, woken by
//! another task, often ran on the other core: the parked worker was woken
//! to steal it, cold. A request passes between four tasks (the
//! connection's, the gateway instance's, and wasi-http's request and I/O
//! tasks for the call to the core) and back; pinned, none of those
//! wake-ups leaves the thread.
//!
//! The threads are shared by every server in the process and never stop,
//! so that a socket a request opened on one of them (a pooled PostgreSQL
//! connection, say) stays usable wherever it is used next. [`serve`] is
//! the accept loop of both ports: the public one's connections go to these
//! threads, the core's own port's (which gateways on Spin call) stay on the
//! runtime that accepted them.

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::io::TokioIo;

/// Setting: how many connection threads (default: one per core).
pub const ENV_CONNECTION_THREADS: &str = "NIXO_CONNECTION_THREADS";
/// Connection threads at most, whatever the setting or the machine says.
pub const CONNECTION_THREADS_MAX: usize = 64;

/// How often a connection thread looks at the tasks woken from other
/// threads before its own: every task. Those are mostly requests the
/// ledger writer has just answered; taken first, a request ends before new
/// ones start. At tokio's default (every 31 tasks) a transfer waited
/// 0.6–0.8 ms from the writer's answer to running again at 16
/// connections; at 1, 0.3–0.4 ms, and ≈ 14 % more transfers.
pub const REMOTE_WAKES_FIRST_EVERY_TASKS: u32 = 1;

struct Threads {
    runtimes: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

static THREADS: OnceLock<Threads> = OnceLock::new();

/// How many threads for `setting` (the variable's value, if set) on a
/// machine with `cores`: the setting when it is a whole number from 1, else
/// one per core; never more than [`CONNECTION_THREADS_MAX`].
pub fn count(setting: Option<&str>, cores: usize) -> usize {
    setting
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(cores)
        .clamp(1, CONNECTION_THREADS_MAX)
}

fn threads() -> &'static Threads {
    THREADS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let wanted = count(std::env::var(ENV_CONNECTION_THREADS).ok().as_deref(), cores);
        let runtimes = (0..wanted).filter_map(|index| start(index).ok()).collect();
        Threads {
            runtimes,
            next: AtomicUsize::new(0),
        }
    })
}

/// Starts connection thread `index`; answers its runtime's handle.
fn start(index: usize) -> std::io::Result<tokio::runtime::Handle> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.global_queue_interval(REMOTE_WAKES_FIRST_EVERY_TASKS);
    let runtime = builder.enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("nixo-conn-{index}"))
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .inspect_err(|err| tracing::warn!(error = %err, "a connection thread did not start"))?;
    Ok(handle)
}

/// Runs a connection's future on the next connection thread in turn (on
/// the caller's runtime when none could be started). The future first runs
/// there, so a socket it makes registers with that thread's runtime.
pub fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let threads = threads();
    if threads.runtimes.is_empty() {
        tokio::spawn(task);
        return;
    }
    let index = threads.next.fetch_add(1, Ordering::Relaxed) % threads.runtimes.len();
    threads.runtimes[index].spawn(task);
}

/// Where [`serve`] runs a port's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the connection threads, in turn: the public port, whose requests
    /// pass between the gateway instance's tasks.
    ConnectionThreads,
    /// On the runtime that accepted them: the core's port, where one task
    /// runs a request from end to end. On the connection threads its
    /// requests cost the core more CPU, not less (62 against 53 µs per
    /// `GET /v1/balances` through a gateway on Spin at 16 connections).
    Accepting,
}

/// Accepts `listener`'s connections until `shutdown` changes and serves
/// each where `placement` says: HTTP/1.1 with keep-alive, `TCP_NODELAY`,
/// at most [`super::HEADER_READ_TIMEOUT_MS`] for a request's headers (a
/// client that never finishes them is disconnected); at shutdown a
/// connection finishes its request in flight, then closes. `service_for`
/// makes the service of the connection from `peer`.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    placement: Placement,
    service_for: F,
) -> anyhow::Result<()>
where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        // Answers are small writes: without TCP_NODELAY, Nagle's algorithm
        // holds a response's last segment until the client's delayed ACK
        // (up to ~40 ms on a keep-alive connection).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "TCP_NODELAY not set");
        }
        let service = service_for(peer);
        let conn_shutdown = shutdown.clone();
        if placement == Placement::Accepting {
            tokio::spawn(serve_connection(stream, peer, service, conn_shutdown));
            continue;
        }
        // The socket leaves this runtime for its connection thread's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "accepted connection lost");
                continue;
            }
        };
        spawn(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve_connection(stream, peer, service, conn_shutdown).await,
                Err(err) => tracing::warn!(%peer, error = %err, "connection not taken by its thread"),
            }
        });
    }
}

async fn serve_connection<S, B>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_millis(super::HEADER_READ_TIMEOUT_MS))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_setting_or_one_per_core_and_never_past_the_maximum() {
        assert_eq!(count(None, 2), 2);
        assert_eq!(count(Some("3"), 2), 3);
        assert_eq!(count(Some(" 1 "), 8), 1);
        assert_eq!(count(Some("0"), 4), 4);
        assert_eq!(count(Some("many"), 4), 4);
        assert_eq!(count(Some("1000"), 2), CONNECTION_THREADS_MAX);
        assert_eq!(count(None, 500), CONNECTION_THREADS_MAX);
        assert_eq!(count(None, 0), 1);
    }

    #[test]
    fn a_connection_and_every_task_it_spawns_run_on_one_connection_thread() {
        let (sender, receiver) = std::sync::mpsc::channel();
        spawn(async move {
            let here = std::thread::current().name().map(str::to_string);
            let spawned = tokio::spawn(async { std::thread::current().name().map(str::to_string) })
                .await
                .ok()
                .flatten();
            let _ = sender.send((here, spawned));
        });
        let (here, spawned) = receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the connection ran");
        let here = here.expect("a named thread");
        assert!(here.starts_with("nixo-conn-"), "{here}");
        assert_eq!(spawned.as_deref(), Some(here.as_str()));
    }
}
