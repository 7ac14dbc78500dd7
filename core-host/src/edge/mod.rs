//! The edge: runs the gateway component (a Spin HTTP component) in-process
//! under wasmtime-wasi-http, on the public port.
//!
//! The component's outbound request to the core never leaves the process:
//! the `send_request` hook hands it to the core's router directly. Any other
//! outbound host is refused by the same rule Spin applies with
//! `allowed_outbound_hosts` (the allowed list here is the core alone). The host also
//! provides what Spin provides and wasmtime does not:
//! `fermyon:spin/variables@2.0.0` and `wasi:keyvalue@0.2.0-draft2` store and
//! atomics ([`kv`]: in memory, or Redis shared by replicas).

pub mod kv;
mod outbound;
pub mod threads;

pub use kv::KvStores;
pub use outbound::AllowedHosts;

mod spin_variables {
    wasmtime::component::bindgen!({
        inline: "
            package fermyon:spin@2.0.0;
            interface variables {
                variant error {
                    invalid-name(string),
                    undefined(string),
                    provider(string),
                    other(string),
                }
                get: func(name: string) -> result<string, error>;
            }
            world variables-host {
                import variables;
            }
        ",
    });
}

use crate::metrics::Stage;
use crate::wasm_cache;
use anyhow::Context;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use spin_variables::fermyon::spin::variables;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tower::ServiceExt;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Authority the gateway uses for the core in embedded mode.
pub const CORE_AUTHORITY: &str = "nixo-core.internal";
/// Largest request body relayed from the gateway to the core (answers stream).
pub const RELAY_BODY_LEN_MAX_BYTES: usize = 1 << 20;
/// Most of an oversized request body read and dropped after answering 413.
pub const DRAIN_LEN_MAX_BYTES: usize = 16 << 20;
/// How long a client may take to send a request's headers (a slow-loris
/// client is disconnected after it).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// How long a client may take to send a request's body: then 408.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Gateway instances alive at once (one per request in flight); beyond it
/// the edge answers 503 with `Retry-After`.
pub const EDGE_INSTANCES_MAX: u32 = 1_000;
/// Linear memory one gateway instance may use.
pub const EDGE_MEMORY_MAX_BYTES: usize = 64 << 20;
/// Gateway instances made ahead of the requests that will use them, at
/// most: after answering, a request makes the next one's instance, so a
/// request finds it ready instead of instantiating on its own path. Each
/// is still used for one request only, as Spin does.
pub const EDGE_SPARE_INSTANCES_MAX: usize = 4;

/// Per-request state of a gateway instance.
struct EdgeState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    dispatch: CoreDispatch,
    variables: Arc<BTreeMap<String, String>>,
    kv: KvStores,
}

impl EdgeState {
    fn kv(&mut self) -> (&KvStores, &mut ResourceTable) {
        (&self.kv, &mut self.table)
    }
}

impl WasiView for EdgeState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for EdgeState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.dispatch,
        }
    }
}

impl variables::Host for EdgeState {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        self.variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(format!("no variable named {name}")))
    }
}

/// Sends the gateway's outbound requests for the core to the core's router.
#[derive(Clone)]
struct CoreDispatch {
    core: Router,
    allowed: Arc<AllowedHosts>,
    /// This request's moments, for the component's own stages (the
    /// gateway's own copy is a template: each request gets fresh marks).
    marks: Arc<GuestMarks>,
}

/// When a request's instance was ready and when the core last answered it:
/// the component's own work is [`Stage::EdgeGuestRequest`] (from the
/// first to its first call to the core) and [`Stage::EdgeGuestResponse`]
/// (from the second to the response head it hands back).
#[derive(Default)]
struct GuestMarks {
    instantiated: Mutex<Option<Instant>>,
    core_answered: Mutex<Option<Instant>>,
}

impl GuestMarks {
    fn set(mark: &Mutex<Option<Instant>>) {
        *mark.lock().expect("guest marks") = Some(Instant::now());
    }

    /// Records `stage` as ended now, since `mark`, once.
    fn done(stage: Stage, mark: &Mutex<Option<Instant>>) {
        if let Some(at) = mark.lock().expect("guest marks").take() {
            stage.done(at);
        }
    }
}

type Pending<T> = Box<dyn Future<Output = T> + Send>;

impl WasiHttpHooks for CoreDispatch {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Pending<Result<(), wasmtime_wasi_http::Error>>,
    ) -> Pending<
        Result<(http::Response<WasiBody>, Pending<Result<(), wasmtime_wasi_http::Error>>), wasmtime_wasi_http::Error>,
    > {
        GuestMarks::done(Stage::EdgeGuestRequest, &self.marks.instantiated);
        let core = self.core.clone();
        let allowed = self.allowed.clone();
        let marks = self.marks.clone();
        Box::new(async move {
            if !allowed.allows(request.uri()) {
                tracing::warn!(uri = %request.uri(), "gateway tried an outbound host that is not allowed");
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }

            let (parts, body) = request.into_parts();
            let body = Limited::new(body, RELAY_BODY_LEN_MAX_BYTES)
                .collect()
                .await
                .map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(None))?
                .to_bytes();
            let request = http::Request::from_parts(parts, axum::body::Body::from(body));
            let started = Instant::now();
            let response = match core.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Stage::EdgeCoreCall.done(started);
            GuestMarks::set(&marks.core_answered);
            // The core's answer streams to the component as it is made
            // (an export of any size keeps memory flat).
            let (parts, body) = response.into_parts();
            let body = body
                .map_err(|err| wasmtime_wasi_http::Error::InternalError(Some(err.to_string())))
                .boxed_unsync();
            let done: Pending<Result<(), wasmtime_wasi_http::Error>> = Box::new(async { Ok(()) });
            Ok((http::Response::from_parts(parts, body), done))
        })
    }
}

/// The gateway component, compiled and pre-linked, ready to serve.
#[derive(Clone)]
pub struct Gateway {
    pre: ProxyPre<EdgeState>,
    dispatch: CoreDispatch,
    variables: Arc<BTreeMap<String, String>>,
    kv: KvStores,
    /// Fresh instances, never used, for the next requests.
    spares: Arc<Mutex<Vec<Instance>>>,
}

/// A gateway instance and the store it lives in.
struct Instance {
    store: Store<EdgeState>,
    proxy: Proxy,
}

/// How the embedded gateway is configured: what Spin would take from the
/// manifest, its variables and its runtime config.
#[derive(Clone)]
pub struct EdgeConfig {
    /// HMAC key shared with the core.
    pub signing_secret: String,
    /// Extra Spin variables (`environments`, `rate_limit_sandbox`, …).
    pub variables: BTreeMap<String, String>,
    /// The key/value store (label `default`).
    pub kv: KvStores,
}

impl Gateway {
    /// Compiles (or loads from `cache_dir`) the component and links it with
    /// WASI, WASI HTTP and Spin variables.
    pub fn new(component_bytes: &[u8], cache_dir: &Path, core: Router, config: EdgeConfig) -> anyhow::Result<Gateway> {
        let mut engine_config = edge_engine_config();
        wasm_cache::apply_profiler(&mut engine_config)?;
        let engine = Engine::new(&engine_config)?;
        let component = wasm_cache::load_component(&engine, component_bytes, cache_dir)
            .context("compiling the gateway component")?;
        let mut linker = Linker::<EdgeState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        variables::add_to_linker::<EdgeState, HasSelf<EdgeState>>(&mut linker, |s| s)?;
        kv::add_to_linker(&mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        let mut variables = config.variables;
        variables
            .entry("core_url".to_string())
            .or_insert_with(|| format!("http://{CORE_AUTHORITY}"));
        variables.insert("gateway_signing_secret".to_string(), config.signing_secret);
        // Embedded, the gateway's one outbound host is the in-process core.
        let allowed = AllowedHosts::parse(&[format!("http://{CORE_AUTHORITY}")])?;
        Ok(Gateway {
            pre,
            dispatch: CoreDispatch {
                core,
                allowed: Arc::new(allowed),
                marks: Arc::default(),
            },
            variables: Arc::new(variables),
            kv: config.kv,
            spares: Arc::default(),
        })
    }

    /// A store for one request's instance, with this request's marks.
    fn new_store(&self, marks: Arc<GuestMarks>) -> Store<EdgeState> {
        Store::new(
            self.pre.engine(),
            EdgeState {
                wasi: WasiCtx::builder().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                dispatch: CoreDispatch {
                    marks,
                    ..self.dispatch.clone()
                },
                variables: self.variables.clone(),
                kv: self.kv.clone(),
            },
        )
    }

    async fn instantiate(&self, mut store: Store<EdgeState>) -> wasmtime::Result<Instance> {
        let instantiating = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Stage::EdgeInstantiate.done(instantiating);
        Ok(Instance { store, proxy })
    }

    fn take_spare(&self) -> Option<Instance> {
        self.spares.lock().expect("edge spares").pop()
    }

    /// Makes a spare instance when there are fewer than
    /// [`EDGE_SPARE_INSTANCES_MAX`] (a failure only leaves the next request
    /// to instantiate its own).
    async fn replenish(&self) {
        if self.spare_count() >= EDGE_SPARE_INSTANCES_MAX {
            return;
        }
        let Ok(instance) = self.instantiate(self.new_store(Arc::default())).await else {
            return;
        };
        let mut spares = self.spares.lock().expect("edge spares");
        if spares.len() < EDGE_SPARE_INSTANCES_MAX {
            spares.push(instance);
        }
    }

    /// How many spare instances wait for requests.
    pub fn spare_count(&self) -> usize {
        self.spares.lock().expect("edge spares").len()
    }

    /// Serves one client request through a fresh gateway instance.
    pub async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        // The guest reads the whole body into its memory anyway: read it
        // here, up to the relay limit, so an oversized or broken body gets a
        // clean 4xx from the host instead of failing inside the component.
        let (mut parts, body) = request.into_parts();
        // Who connected, as Spin tells a component (replacing whatever the
        // client sent under that name).
        if let Ok(value) = http::HeaderValue::from_str(&peer.to_string()) {
            parts.headers.insert(CLIENT_ADDR_HEADER, value);
        }
        let reading = tokio::time::timeout(std::time::Duration::from_millis(BODY_READ_TIMEOUT_MS), read_body(body));
        let body = match reading.await {
            Ok(Ok(body)) => body,
            Ok(Err(response)) => return Ok(*response),
            Err(_) => {
                return Ok(error_response(
                    http::StatusCode::REQUEST_TIMEOUT,
                    br#"{"error":{"code":"invalid_request","message":"The request body did not arrive in time","field":"body"}}"#,
                ));
            }
        };
        let path = parts.uri.path();
        let dashboard =
            path == crate::api::dashboard::PREFIX || path.starts_with(&format!("{}/", crate::api::dashboard::PREFIX));
        if crate::api::OPS_PATHS.contains(&path) || dashboard {
            // Liveness, readiness and metrics carry no customer data and need
            // no key: the host answers them without running the component.
            // The dashboard authenticates its own sessions (a signed cookie).
            let request = http::Request::from_parts(parts, axum::body::Body::from(body));
            let response = match self.dispatch.core.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, RELAY_BODY_LEN_MAX_BYTES).await?;
            return Ok(hyper::Response::from_parts(
                parts,
                Full::new(body).map_err(|never| match never {}).boxed_unsync(),
            ));
        }
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let started = Instant::now();
        let marks = Arc::new(GuestMarks::default());
        // A spare instance when there is one (its store gets this request's
        // marks), else a store to instantiate in.
        let (mut store, proxy) = match self.take_spare() {
            Some(Instance { mut store, proxy }) => {
                store.data_mut().dispatch.marks = marks.clone();
                (store, Some(proxy))
            }
            None => (self.new_store(marks.clone()), None),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let gateway = self.clone();
        let instance_marks = marks.clone();
        let task = tokio::task::spawn(async move {
            let Instance { mut store, proxy } = match proxy {
                Some(proxy) => Instance { store, proxy },
                None => gateway.instantiate(store).await?,
            };
            GuestMarks::set(&instance_marks.instantiated);
            let handled = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await;
            // The answer is out of the instance: let the connection's task
            // send it before this instance is torn down (its memory reset,
            // its slot back in the pool) and the next one is made.
            tokio::task::yield_now().await;
            drop(store);
            gateway.replenish().await;
            handled
        });
        match receiver.await {
            Ok(Ok(response)) => {
                Stage::EdgeRequest.done(started);
                GuestMarks::done(Stage::EdgeGuestResponse, &marks.core_answered);
                Ok(response)
            }
            Ok(Err(code)) => anyhow::bail!("gateway answered with error code {code:?}"),
            Err(_) => match task.await {
                Ok(Ok(())) => anyhow::bail!("gateway returned without a response"),
                Ok(Err(err)) => Err(anyhow::Error::from(err).context("gateway component failed")),
                Err(join) => Err(anyhow::Error::from(join).context("gateway task failed")),
            },
        }
    }
}

/// Reads a request body up to [`RELAY_BODY_LEN_MAX_BYTES`], or answers for
/// it: 413 when it is larger (the rest is read and dropped in the background,
/// up to [`DRAIN_LEN_MAX_BYTES`], so the client sees the answer instead of a
/// reset connection), 400 when it cannot be read.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, Box<hyper::Response<HyperOutgoingBody>>> {
    let mut buffered = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Box::new(error_response(
                http::StatusCode::BAD_REQUEST,
                br#"{"error":{"code":"invalid_request","message":"The request body could not be read","field":"body"}}"#,
            )));
        };
        let Ok(data) = frame.into_data() else { continue };
        if buffered.len() + data.len() > RELAY_BODY_LEN_MAX_BYTES {
            tokio::spawn(async move {
                let mut drained = 0;
                while drained <= DRAIN_LEN_MAX_BYTES
                    && let Some(Ok(frame)) = body.frame().await
                {
                    drained += frame.data_ref().map_or(0, |d| d.len());
                }
            });
            return Err(Box::new(error_response(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                br#"{"error":{"code":"invalid_request","message":"Request body is larger than 65536 bytes","field":"body"}}"#,
            )));
        }
        buffered.extend_from_slice(&data);
    }
    Ok(buffered.freeze())
}

/// The edge engine: a fresh instance per request, as Spin does, from a
/// pooling allocator, so an instance costs no mmap/munmap (and no TLB
/// shootdown) and its fiber stack is reused. Measured here: instantiation
/// p50 87 µs on demand, 55 µs pooled.
fn edge_engine_config() -> Config {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(EDGE_INSTANCES_MAX)
        .total_core_instances(EDGE_INSTANCES_MAX * 8)
        .total_memories(EDGE_INSTANCES_MAX * 2)
        .total_tables(EDGE_INSTANCES_MAX * 2)
        .total_stacks(EDGE_INSTANCES_MAX)
        .max_memories_per_component(2)
        .max_tables_per_component(2)
        .max_core_instances_per_component(16)
        .max_memory_size(EDGE_MEMORY_MAX_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 20);
    let mut config = Config::new();
    config
        .memory_reservation(wasm_cache::MEMORY_RESERVATION_BYTES)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    config
}

/// An error the host answers itself (the component could not): it still
/// carries a `Request-Id`, made the way the gateway makes them.
fn error_response(status: http::StatusCode, body: &'static [u8]) -> hyper::Response<HyperOutgoingBody> {
    let body = Bytes::from_static(body);
    let mut response = hyper::Response::new(Full::new(body).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let request_id = nixo_api::headers::request_id(rand::random());
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        headers.insert(nixo_api::signing::REQUEST_ID_HEADER, value);
    }
    response
}

/// What a client sees when the edge itself fails.
fn edge_failure_response(err: &anyhow::Error) -> hyper::Response<HyperOutgoingBody> {
    let at_capacity = err
        .chain()
        .any(|cause| cause.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some());
    if at_capacity {
        let mut response = error_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":{"code":"internal_error","message":"The edge is at capacity; retry after the time in Retry-After"}}"#,
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        return response;
    }
    error_response(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        br#"{"error":{"code":"internal_error","message":"An internal error occurred at the edge; retry with backoff"}}"#,
    )
}

/// The header carrying the connecting peer's address to the component.
pub const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// Accepts HTTP/1.1 connections on `listener` until `shutdown` resolves.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    threads::serve(listener, shutdown, threads::Placement::ConnectionThreads, move |peer| {
        let gateway = gateway.clone();
        hyper::service::service_fn(move |request| {
            let gateway = gateway.clone();
            async move {
                let response = match gateway.handle(request, peer).await {
                    Ok(response) => response,
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "edge failure");
                        edge_failure_response(&err)
                    }
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component (binary format, component layer).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[tokio::test]
    async fn requests_use_spare_instances_and_no_more_than_the_most_are_kept() {
        let cache = tempfile::tempdir().unwrap();
        let core = Router::new().fallback(|| async { "core" });
        let config = EdgeConfig {
            signing_secret: "s".repeat(nixo_api::signing::SECRET_LEN_MIN_BYTES),
            variables: BTreeMap::new(),
            kv: KvStores::single("default", None).await.unwrap(),
        };
        let gateway = Gateway::new(crate::artefacts::GATEWAY_WASM, cache.path(), core, config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(gateway.clone(), listener, shutdown));
        let client = reqwest::Client::new();
        // Every request runs the component (an unknown route is its 404).
        let request = |client: reqwest::Client, base: String| async move {
            let response = client.get(format!("{base}/v1/nowhere")).send().await.unwrap();
            assert_eq!(response.status(), 404);
            assert!(response.text().await.unwrap().contains("resource_not_found"));
        };
        let settled = |want: usize| {
            let gateway = gateway.clone();
            async move {
                for _ in 0..200 {
                    if gateway.spare_count() == want {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                false
            }
        };

        // One at a time, each request takes the spare the one before made.
        for _ in 0..3 {
            request(client.clone(), base.clone()).await;
            assert!(settled(1).await, "one spare after a lone request");
        }
        // A burst makes one each after answering, up to the most kept.
        let burst: Vec<_> = (0..EDGE_SPARE_INSTANCES_MAX * 3)
            .map(|_| tokio::spawn(request(client.clone(), base.clone())))
            .collect();
        for task in burst {
            task.await.unwrap();
        }
        assert!(settled(EDGE_SPARE_INSTANCES_MAX).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(gateway.spare_count(), EDGE_SPARE_INSTANCES_MAX);
        for _ in 0..EDGE_SPARE_INSTANCES_MAX * 2 {
            gateway.replenish().await;
        }
        assert_eq!(gateway.spare_count(), EDGE_SPARE_INSTANCES_MAX);
    }

    #[tokio::test]
    async fn a_full_instance_pool_is_a_503_with_retry_after() {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(1);
        let mut config = Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let component = wasmtime::component::Component::from_binary(&engine, EMPTY_COMPONENT).unwrap();
        let linker = Linker::<()>::new(&engine);
        let mut first = Store::new(&engine, ());
        linker.instantiate_async(&mut first, &component).await.unwrap();
        let mut second = Store::new(&engine, ());
        let err = linker.instantiate_async(&mut second, &component).await.unwrap_err();
        let err = anyhow::Error::from(err).context("gateway component failed");
        let response = edge_failure_response(&err);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        let id = response.headers()["request-id"].to_str().unwrap();
        assert!(id.starts_with("req_") && id.len() == 28, "{id}");
        let other = edge_failure_response(&anyhow::anyhow!("something else"));
        assert_eq!(other.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
