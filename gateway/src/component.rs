//! The Spin entry point: glue between `wasi:http`, `wasi:keyvalue`, Spin
//! variables and the edge logic.
//!
//! The handler is synchronous and speaks the raw `wasi:http@0.2.0` types: a
//! request is read once into [`Incoming`], the core is called with one
//! outgoing request (its body written in one call), and the reply goes out
//! with a `content-length`. Fewer host calls per request than the SDK's
//! async conversions make, and no executor between them.

use crate::access::{self, KeyRecord, RateDecision, RateLimit};
use crate::edge::{self, EdgeError, KeyEnvironment};
use crate::schema::{self, Route};
use crate::signing::{self, SignedParts};
use crate::versions;
use spin_sdk::http::{
    Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::IncomingBody;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

use crate::edge::variables::{
    AUTH_FAILURES_PER_ADDRESS as VAR_AUTH_FAILURES, CORE_URL as VAR_CORE_URL, ENVIRONMENTS as VAR_ENVIRONMENTS,
    KV_STORE as VAR_KV_STORE, RATE_LIMIT_LIVE as VAR_RATE_LIMIT_LIVE, RATE_LIMIT_PUBLIC as VAR_RATE_LIMIT_PUBLIC,
    RATE_LIMIT_SANDBOX as VAR_RATE_LIMIT_SANDBOX, SIGNING_SECRET as VAR_SIGNING_SECRET,
    TRUSTED_PROXIES as VAR_TRUSTED_PROXIES,
};

/// The header Spin (and the embedded host) sets to the connecting peer.
const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// Client headers passed on to the core; everything else stays at the edge
/// (the API key in particular, and any client-sent `spin-*` header).
const FORWARDED_HEADERS: [&str; 2] = ["content-type", "idempotency-key"];

/// Largest chunk read from a body stream in one call.
const READ_CHUNK_MAX_BYTES: u64 = 64 * 1024;
/// Largest write `blocking-write-and-flush` takes (the `wasi:io` contract).
const WRITE_AND_FLUSH_MAX_BYTES: usize = 4096;

type HeaderList = Vec<(String, Vec<u8>)>;

/// A client's request, read whole (the body up to one byte past the limit,
/// so that an oversized body is known as such without reading all of it).
struct Incoming {
    method: Method,
    path_and_query: String,
    headers: HeaderList,
    body: Vec<u8>,
    /// The rest of an oversized body, still arriving.
    unread: Option<Unread>,
}

impl Incoming {
    fn read(request: IncomingRequest) -> Option<Incoming> {
        let body = request.consume().ok()?;
        let stream = body.stream().ok()?;
        let bytes = read_body(&stream, edge::BODY_LEN_MAX_BYTES + 1)?;
        let unread = (bytes.len() > edge::BODY_LEN_MAX_BYTES).then_some(Unread { stream, _body: body });
        Some(Incoming {
            method: request.method(),
            path_and_query: request.path_with_query().unwrap_or_else(|| "/".into()),
            headers: request.headers().entries(),
            body: bytes,
            unread,
        })
    }

    /// A header's value as text (`None` when absent or not UTF-8).
    fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or_default()
    }

    /// The query string without its `?` (empty when there is none).
    fn query(&self) -> &str {
        self.path_and_query.split_once('?').map_or("", |(_, query)| query)
    }
}

/// The unread rest of a request body. Dropping it drops the request: the
/// server may then close the connection while the client still writes, and
/// the client sees a broken pipe instead of the answer.
struct Unread {
    // Declared first: a stream is dropped before the body it belongs to.
    stream: InputStream,
    _body: IncomingBody,
}

impl Unread {
    /// Reads and drops the rest, up to [`edge::DRAIN_LEN_MAX_BYTES`], after
    /// the answer (a 413) is out: the client finishes sending and reads it.
    fn drain(self) {
        let mut drained = 0;
        while drained <= edge::DRAIN_LEN_MAX_BYTES {
            match self.stream.blocking_read(READ_CHUNK_MAX_BYTES) {
                Ok(chunk) => drained += chunk.len(),
                Err(_) => break,
            }
        }
    }
}

/// Reads a body stream to its end, or to `limit` bytes; `None` when the
/// stream fails.
fn read_body(stream: &InputStream, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match stream.blocking_read(READ_CHUNK_MAX_BYTES) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return None,
        }
    }
    Some(bytes)
}

/// Writes all of `bytes`, waiting for the stream's permits, then flushes.
fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    if bytes.len() <= WRITE_AND_FLUSH_MAX_BYTES {
        return stream.blocking_write_and_flush(bytes);
    }
    while !bytes.is_empty() {
        let permit = stream.check_write()?;
        if permit == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, later) = bytes.split_at((permit as usize).min(bytes.len()));
        stream.write(now)?;
        bytes = later;
    }
    stream.blocking_flush()
}

/// Writes what of `bytes` `stream` takes without waiting; answers how much.
fn write_ready(stream: &OutputStream, bytes: &[u8]) -> usize {
    let permit = stream
        .check_write()
        .map_or(0, |permit| usize::try_from(permit).unwrap_or(usize::MAX));
    let now = permit.min(bytes.len());
    if now == 0 || stream.write(&bytes[..now]).is_err() {
        return 0;
    }
    now
}

/// A response the edge sends: whole, with its headers in order.
struct Reply {
    status: u16,
    headers: HeaderList,
    body: Vec<u8>,
}

impl Reply {
    /// A JSON answer of the edge's own.
    fn json(status: u16, request_id: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                (signing::REQUEST_ID_HEADER.into(), request_id.as_bytes().to_vec()),
            ],
            body,
        }
    }

    /// Sets a header, replacing any value it had.
    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.as_bytes().to_vec()));
    }
}

/// The body of a core response being relayed as it streams (an export).
/// Fields drop in order: the stream before the body before the response.
struct CoreStream {
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl CoreStream {
    fn open(response: IncomingResponse) -> Option<CoreStream> {
        let body = response.consume().ok()?;
        let stream = body.stream().ok()?;
        Some(CoreStream {
            stream,
            _body: body,
            _response: response,
        })
    }
}

fn new_request_id() -> String {
    let mut random = [0u8; 12];
    // wasi:random never fails; an all-zero id is still a valid id.
    let _ = getrandom::fill(&mut random);
    edge::request_id(random)
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Patch => "PATCH".into(),
        Method::Head => "HEAD".into(),
        Method::Options => "OPTIONS".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(other) => other.to_ascii_uppercase(),
    }
}

fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok().filter(|v| !v.trim().is_empty())
}

/// The core's answer: whole, or (an export) a head whose body streams from
/// the core as it comes.
type Forwarded = (Reply, Option<CoreStream>);

#[http_component]
fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let request_id = new_request_id();
    let Some(incoming) = Incoming::read(request) else {
        let body = br#"{"error":{"code":"invalid_request","message":"The request could not be read","field":"body"}}"#;
        emit(Reply::json(400, &request_id, body.to_vec()), None, response_out);
        return;
    };
    let mut rate = None;
    let mut version = None;
    let (mut reply, stream) = match gate_and_forward(&incoming, &request_id, &mut rate, &mut version) {
        Ok(forwarded) => forwarded,
        Err(err) => {
            let mut reply = Reply::json(err.status, &request_id, err.body().into_bytes());
            if err.status == 405 {
                reply.set_header("allow", &schema::allowed_methods(incoming.path()));
            }
            (reply, None)
        }
    };
    if let Some(rate) = rate {
        for (name, value) in rate.headers() {
            reply.set_header(name, &value);
        }
    }
    if let Some(version) = version {
        reply.set_header("nixo-version", version);
    }
    emit(reply, stream, response_out);
    if let Some(unread) = incoming.unread {
        unread.drain();
    }
}

/// Writes the response: its body, or the core's body as it streams in.
fn emit(reply: Reply, stream: Option<CoreStream>, out: ResponseOutparam) {
    let Reply {
        status,
        mut headers,
        body,
    } = reply;
    if stream.is_none() {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let Ok(fields) = Fields::from_list(&headers) else {
        return;
    };
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    let Ok(sink) = outgoing.write() else {
        return;
    };
    // What of a whole body the host takes at once goes before the head, so
    // that both leave in one segment: Spin leaves Nagle's algorithm on, and
    // a body sent after its head waited for the client's delayed ACK
    // (≈ 40 ms, on up to one request in ten back to back).
    let early = match stream {
        None => write_ready(&sink, &body),
        Some(_) => 0,
    };
    out.set(response);
    let written = match stream {
        // Nothing left: no empty write, whose flush would wait for the
        // host to take the first chunk (the body channel holds two).
        None if early == body.len() => true,
        None => write_all(&sink, &body[early..]).is_ok(),
        Some(core) => loop {
            match core.stream.blocking_read(READ_CHUNK_MAX_BYTES) {
                Ok(chunk) => {
                    if write_all(&sink, &chunk).is_err() {
                        break false;
                    }
                }
                Err(StreamError::Closed) => break true,
                Err(StreamError::LastOperationFailed(_)) => break false,
            }
        },
    };
    drop(sink);
    // A body cut short is left unfinished, so the client sees it broken
    // rather than complete.
    if written {
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

/// Sends one request to the core and waits for its response head.
fn send_to_core(
    config: &Config,
    method: &Method,
    path_and_query: &str,
    mut headers: HeaderList,
    body: &[u8],
) -> Result<IncomingResponse, EdgeError> {
    let target = edge::core_target(&config.core_url, path_and_query).ok_or(edge::ERR_MISCONFIGURED)?;
    if !body.is_empty() {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let fields = Fields::from_list(&headers).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let request = OutgoingRequest::new(fields);
    let scheme = if target.https { Scheme::Https } else { Scheme::Http };
    let set = [
        request.set_method(method),
        request.set_scheme(Some(&scheme)),
        request.set_authority(Some(target.authority)),
        request.set_path_with_query(Some(&target.path_and_query)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(edge::ERR_MISCONFIGURED);
    }
    let outgoing = request.body().map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    // The body, as far as the host takes it at once, before the request is
    // sent, so that its head and body leave together (see `emit`).
    let sink = outgoing.write().map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let early = write_ready(&sink, body);
    let future = if early == body.len() {
        drop(sink);
        OutgoingBody::finish(outgoing, None).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
        outgoing_handler::handle(request, None).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?
    } else {
        let future = outgoing_handler::handle(request, None).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
        write_all(&sink, &body[early..]).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
        drop(sink);
        OutgoingBody::finish(outgoing, None).map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
        future
    };
    // The core has not answered yet when `handle` returns (its request
    // runs once this instance waits): wait first, then take the answer.
    let response = loop {
        future.subscribe().block();
        if let Some(response) = future.get() {
            break response;
        }
    };
    match response {
        Ok(Ok(response)) => Ok(response),
        _ => Err(edge::ERR_CORE_UNAVAILABLE),
    }
}

/// A core response read whole: status, relayed headers, body.
fn read_core_response(response: IncomingResponse) -> Result<(u16, HeaderList, Vec<u8>), EdgeError> {
    let status = response.status();
    let headers = response.headers().entries();
    let body = response.consume().map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let bytes = {
        let stream = body.stream().map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
        read_body(&stream, usize::MAX).ok_or(edge::ERR_CORE_UNAVAILABLE)?
    };
    drop(IncomingBody::finish(body));
    Ok((status, headers, bytes))
}

/// The core's response headers a client sees, and the edge's request id.
fn relayed(core_headers: HeaderList, request_id: &str) -> HeaderList {
    let mut headers: HeaderList = core_headers
        .into_iter()
        .filter(|(name, value)| edge::relay_response_header(name) && std::str::from_utf8(value).is_ok())
        .collect();
    headers.push((signing::REQUEST_ID_HEADER.into(), request_id.as_bytes().to_vec()));
    headers
}

/// Signs a request to the core: the headers that carry its request id and
/// signature.
fn signed_headers(config: &Config, parts: &SignedParts, now_s: i64) -> HeaderList {
    let signature = signing::sign(config.secret.as_bytes(), parts, now_s);
    vec![
        (signing::REQUEST_ID_HEADER.into(), parts.request_id.as_bytes().to_vec()),
        (signing::SIGNATURE_HEADER.into(), signature.into_bytes()),
    ]
}

/// The edge's configuration, read from Spin variables.
struct Config {
    core_url: String,
    secret: String,
}

fn config() -> Result<Config, EdgeError> {
    let core_url = variable(VAR_CORE_URL).ok_or(edge::ERR_MISCONFIGURED)?;
    let secret = variable(VAR_SIGNING_SECRET).ok_or(edge::ERR_MISCONFIGURED)?;
    if secret.len() < signing::SECRET_LEN_MIN_BYTES {
        return Err(edge::ERR_MISCONFIGURED);
    }
    Ok(Config { core_url, secret })
}

fn serves(environment: KeyEnvironment) -> bool {
    match variable(VAR_ENVIRONMENTS) {
        None => true,
        Some(list) => list.split(',').any(|e| e.trim() == environment.as_str()),
    }
}

fn default_limit(environment: KeyEnvironment) -> RateLimit {
    let (name, fallback) = match environment {
        KeyEnvironment::Sandbox => (VAR_RATE_LIMIT_SANDBOX, access::RATE_LIMIT_SANDBOX_DEFAULT),
        KeyEnvironment::Live => (VAR_RATE_LIMIT_LIVE, access::RATE_LIMIT_LIVE_DEFAULT),
    };
    variable(name).and_then(|v| RateLimit::parse(&v)).unwrap_or(fallback)
}

fn gate_and_forward(
    req: &Incoming,
    request_id: &str,
    rate: &mut Option<RateDecision>,
    version: &mut Option<&'static str>,
) -> Result<Forwarded, EdgeError> {
    let method = method_name(&req.method);
    let route = schema::find_route(&method, req.path()).map_err(edge::route_error)?;
    let config = config()?;
    let bucket =
        store::open(&variable(VAR_KV_STORE).unwrap_or_else(|| "default".into())).map_err(|_| edge::ERR_KEY_STORE)?;
    let now_ms = unix_now_ms();
    let client = Client::of(req, &config, now_ms);
    if route.is_public() {
        let decision = client.count(&bucket, "public", 1)?;
        if !decision.allowed {
            *rate = Some(decision);
            return Err(edge::ERR_PUBLIC_RATE_LIMITED);
        }
        return forward_public(req, route, &config, request_id).map(|r| (r, None));
    }
    let authorization = req.header("authorization");
    let (claimed, key) = match edge::check_key_format(authorization) {
        Ok(parsed) => parsed,
        Err(err) => return Err(client.failed(&bucket, err, rate)),
    };
    if !serves(claimed) {
        return Err(edge::ERR_WRONG_ENVIRONMENT);
    }
    if req.body.len() > edge::BODY_LEN_MAX_BYTES {
        return Err(edge::ERR_BODY_TOO_LARGE);
    }
    let record = key_record(&bucket, &config, &client, key, request_id, now_ms, rate)?;
    if record.environment != claimed {
        return Err(edge::ERR_UNKNOWN_KEY);
    }
    if record.expired(now_ms) {
        return Err(edge::ERR_EXPIRED_KEY);
    }
    if !record.has_scope(route.scope) {
        return Err(edge::ERR_SCOPE);
    }
    let decision = count_request(&bucket, &record, now_ms / 1000)?;
    *rate = Some(decision);
    if !decision.allowed {
        return Err(edge::ERR_RATE_LIMITED);
    }

    let resolved =
        versions::resolve(req.header("nixo-version"), record.api_version.as_deref()).map_err(EdgeError::invalid)?;
    *version = Some(resolved);
    if let Some(key) = req.header_bytes("idempotency-key")
        && !std::str::from_utf8(key).is_ok_and(edge::idempotency_key_ok)
    {
        return Err(edge::ERR_IDEMPOTENCY_KEY);
    }
    if !req.body.is_empty() && !edge::content_type_ok(req.header("content-type")) {
        return Err(edge::ERR_CONTENT_TYPE);
    }
    if edge::json_depth(&req.body) > edge::JSON_DEPTH_MAX {
        return Err(edge::ERR_JSON_TOO_DEEP);
    }
    let query = req.query();
    let query = (!query.is_empty()).then_some(query);
    let body = versions::upgrade_request(resolved, route.id, &req.body).map_err(EdgeError::invalid)?;
    schema::validate(route, query, &body).map_err(EdgeError::invalid)?;
    // Acting for a customer account: the core checks it is the key's
    // platform's; the edge checks its shape and signs it with the principal.
    let mut principal = record.principal();
    if let Some(value) = req.header_bytes(nixo_api::accounts::ACCOUNT_HEADER) {
        let account = std::str::from_utf8(value)
            .map_err(|_| nixo_api::schema::FieldError::new("Nixo-Account", "Nixo-Account must be an account id"))
            .and_then(nixo_api::accounts::account_header)
            .map_err(EdgeError::invalid)?;
        principal = format!("{principal} {account}");
    }

    forward(req, route, &config, principal, body, resolved, request_id, now_ms)
}

/// Who is calling, for the limits that come before (or instead of) a key:
/// failed authentications and the public routes, counted per address.
struct Client {
    /// `spin-client-addr` and `X-Forwarded-For` as sent; the address is
    /// worked out only when a count needs it (never for a cached valid key).
    peer: Option<String>,
    forwarded_for: Option<String>,
    secret: Vec<u8>,
    now_s: i64,
}

impl Client {
    fn of(req: &Incoming, config: &Config, now_ms: i64) -> Client {
        let text = |name: &str| req.header(name).map(str::to_string);
        Client {
            peer: text(CLIENT_ADDR_HEADER),
            forwarded_for: text("x-forwarded-for"),
            secret: config.secret.as_bytes().to_vec(),
            now_s: now_ms / 1000,
        }
    }

    fn address(&self) -> Option<std::net::IpAddr> {
        let proxies = variable(VAR_TRUSTED_PROXIES)
            .map(|p| access::parse_proxies(&p))
            .unwrap_or_default();
        access::client_address(self.peer.as_deref(), self.forwarded_for.as_deref(), &proxies)
    }

    fn limit(purpose: &str) -> RateLimit {
        let (name, fallback) = match purpose {
            "public" => (VAR_RATE_LIMIT_PUBLIC, access::RATE_LIMIT_PUBLIC_DEFAULT),
            _ => (VAR_AUTH_FAILURES, access::AUTH_FAILURES_PER_ADDRESS_DEFAULT),
        };
        variable(name).and_then(|v| RateLimit::parse(&v)).unwrap_or(fallback)
    }

    /// Adds `by` to this address's `purpose` counter (0 reads it) and judges
    /// the count; a first count in a window drops the previous window's.
    fn count(&self, bucket: &store::Bucket, purpose: &str, by: i64) -> Result<RateDecision, EdgeError> {
        let limit = Self::limit(purpose);
        let window = access::window(limit, self.now_s);
        let address = self.address();
        let key = |index| access::address_counter_key(&self.secret, purpose, address, limit, index);
        let count = atomics::increment(bucket, &key(window.index), by).map_err(|_| edge::ERR_KEY_STORE)?;
        if by > 0 && count == by && window.index > 0 {
            let _ = bucket.delete(&key(window.index - 1));
        }
        Ok(access::decide(limit, window, count))
    }

    /// Whether this address has used up its failed authentications (then a
    /// key not already cached as valid gets no core lookup).
    fn exhausted(&self, bucket: &store::Bucket, rate: &mut Option<RateDecision>) -> Result<(), EdgeError> {
        let decision = self.count(bucket, "authfail", 0)?;
        if decision.remaining == 0 {
            *rate = Some(RateDecision {
                allowed: false,
                ..decision
            });
            return Err(edge::ERR_AUTH_FAILURES);
        }
        Ok(())
    }

    /// Counts a failed authentication: `err` itself, or 429 once the
    /// address is past its limit.
    fn failed(&self, bucket: &store::Bucket, err: EdgeError, rate: &mut Option<RateDecision>) -> EdgeError {
        match self.count(bucket, "authfail", 1) {
            Ok(decision) if !decision.allowed => {
                *rate = Some(decision);
                edge::ERR_AUTH_FAILURES
            }
            Ok(_) => err,
            Err(store_error) => store_error,
        }
    }
}

/// A route anyone may call (the API document, provider callbacks):
/// validated, then forwarded signed with no principal; limited per client
/// address, as there is no key.
fn forward_public(req: &Incoming, route: &Route, config: &Config, request_id: &str) -> Result<Reply, EdgeError> {
    if req.body.len() > edge::BODY_LEN_MAX_BYTES {
        return Err(edge::ERR_BODY_TOO_LARGE);
    }
    let query = req.query();
    let query = (!query.is_empty()).then_some(query);
    schema::validate(route, query, &req.body).map_err(EdgeError::invalid)?;
    let mut headers = signed_headers(
        config,
        &SignedParts {
            method: route.method,
            path_and_query: &req.path_and_query,
            body: &req.body,
            principal: "",
            request_id,
        },
        unix_now_ms() / 1000,
    );
    let method = match route.method {
        "POST" => Method::Post,
        _ => Method::Get,
    };
    if !req.body.is_empty() {
        headers.push(("content-type".into(), b"application/json".to_vec()));
    }
    let core = send_to_core(config, &method, &req.path_and_query, headers, &req.body)?;
    let (status, core_headers, body) = read_core_response(core)?;
    Ok(Reply {
        status,
        headers: relayed(core_headers, request_id),
        body,
    })
}

/// The record of `key`: from the key/value store while fresh, else from the
/// core (and cached). A key the core does not know is remembered as unknown
/// for a while, and counted against the client's address; an address past
/// its failed authentications gets no core lookup for a key never seen.
#[allow(clippy::too_many_arguments)]
fn key_record(
    bucket: &store::Bucket,
    config: &Config,
    client: &Client,
    key: &str,
    request_id: &str,
    now_ms: i64,
    rate: &mut Option<RateDecision>,
) -> Result<KeyRecord, EdgeError> {
    let cache_key = access::cache_key(config.secret.as_bytes(), key);
    let cached = bucket.get(&cache_key).map_err(|_| edge::ERR_KEY_STORE)?;
    if let Some(record) = cached.as_deref().and_then(KeyRecord::from_json)
        && record.fresh(now_ms / 1000)
    {
        return Ok(record);
    }
    if cached
        .as_deref()
        .is_some_and(|c| access::negative_fresh(c, now_ms / 1000))
    {
        return Err(client.failed(bucket, edge::ERR_UNKNOWN_KEY, rate));
    }
    // A key this edge has known as valid is refreshed whoever asks; only a
    // key never seen costs the address its budget of failures.
    if cached.as_deref().and_then(KeyRecord::from_json).is_none() {
        client.exhausted(bucket, rate)?;
    }
    let path = access::RESOLVE_PATH;
    let mut headers = signed_headers(
        config,
        &SignedParts {
            method: "POST",
            path_and_query: path,
            body: key.as_bytes(),
            principal: "",
            request_id,
        },
        now_ms / 1000,
    );
    headers.push(("content-type".into(), b"text/plain".to_vec()));
    let answer = send_to_core(config, &Method::Post, path, headers, key.as_bytes())?;
    let (status, _, body) = read_core_response(answer)?;
    match status {
        200 => {}
        401 | 404 => {
            // A revoked key must not linger in the cache: it is replaced by
            // the record of its being unknown.
            let _ = bucket.set(&cache_key, access::negative_record(now_ms / 1000).as_bytes());
            return Err(client.failed(bucket, edge::ERR_UNKNOWN_KEY, rate));
        }
        // The core is up but its database is not: say so, as the core does.
        503 => return Err(edge::ERR_SERVICE_UNAVAILABLE),
        _ => return Err(edge::ERR_CORE_UNAVAILABLE),
    }
    let mut record = KeyRecord::from_json(&body).ok_or(edge::ERR_CORE_UNAVAILABLE)?;
    record.checked_at_s = now_ms / 1000;
    // A failed cache write only costs another lookup next time.
    let _ = bucket.set(&cache_key, record.to_json().to_string().as_bytes());
    Ok(record)
}

/// Counts this request in the key's current window (atomic increment, so
/// concurrent requests and gateway replicas share one count).
fn count_request(bucket: &store::Bucket, record: &KeyRecord, now_s: i64) -> Result<RateDecision, EdgeError> {
    let limit = record.rate_limit.unwrap_or_else(|| default_limit(record.environment));
    let window = access::window(limit, now_s);
    let counter = access::counter_key(&record.key_id, limit, window.index);
    let count = atomics::increment(bucket, &counter, 1).map_err(|_| edge::ERR_KEY_STORE)?;
    if count == 1 && window.index > 0 {
        // First request of a window: the previous window's counter is done with.
        let _ = bucket.delete(&access::counter_key(&record.key_id, limit, window.index - 1));
    }
    Ok(access::decide(limit, window, count))
}

#[allow(clippy::too_many_arguments)]
fn forward(
    req: &Incoming,
    route: &Route,
    config: &Config,
    principal: String,
    body: Vec<u8>,
    version: &'static str,
    request_id: &str,
    now_ms: i64,
) -> Result<Forwarded, EdgeError> {
    let mut headers = signed_headers(
        config,
        &SignedParts {
            method: route.method,
            path_and_query: &req.path_and_query,
            body: &body,
            principal: &principal,
            request_id,
        },
        now_ms / 1000,
    );
    headers.extend(FORWARDED_HEADERS.iter().filter_map(|name| {
        req.header(name)
            .map(|value| (name.to_string(), value.as_bytes().to_vec()))
    }));
    headers.push(("nixo-version".into(), versions::CURRENT.as_bytes().to_vec()));
    headers.push((signing::PRINCIPAL_HEADER.into(), principal.into_bytes()));
    let core = send_to_core(config, &req.method, &req.path_and_query, headers, &body)?;
    let status = core.status();
    // An export is relayed as it streams (any size, flat memory); every
    // other answer is read whole, to translate it for older versions.
    if route.streams_response() && (200..300).contains(&status) {
        let headers = relayed(core.headers().entries(), request_id);
        let stream = CoreStream::open(core).ok_or(edge::ERR_CORE_UNAVAILABLE)?;
        let reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        return Ok((reply, Some(stream)));
    }
    let (status, core_headers, body) = read_core_response(core)?;
    let body = if (200..300).contains(&status) {
        versions::downgrade_response(version, route.id, &body)
    } else {
        body
    };
    let reply = Reply {
        status,
        headers: relayed(core_headers, request_id),
        body,
    };
    Ok((reply, None))
}
