//! The Spin entry point: glue between `wasi:http`, `wasi:keyvalue`, Spin
//! variables and the edge logic.

use crate::access::{self, KeyRecord, RateDecision, RateLimit};
use crate::edge::{self, EdgeError, KeyEnvironment};
use crate::schema::{self, Route};
use crate::signing::{self, SignedParts};
use crate::versions;
use futures::{SinkExt, StreamExt};
use spin_sdk::http::conversions::TryFromIncomingRequest;
use spin_sdk::http::{
    Fields, IncomingRequest, IncomingResponse, Method, OutgoingResponse, Request, Response, ResponseOutparam,
};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

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

fn respond(status: u16, request_id: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(signing::REQUEST_ID_HEADER, request_id)
        .body(body)
        .build()
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

/// What every response after authentication carries.
struct Answer {
    response: Response,
    rate: Option<RateDecision>,
    version: Option<&'static str>,
}

/// The core's answer: whole, or (an export) a head whose body streams from
/// the core as it comes.
type Forwarded = (Response, Option<IncomingResponse>);

#[http_component]
async fn handle(incoming: IncomingRequest, response_out: ResponseOutparam) {
    let request_id = new_request_id();
    let Ok(req) = Request::try_from_incoming_request(incoming).await else {
        let body = br#"{"error":{"code":"invalid_request","message":"The request could not be read","field":"body"}}"#;
        emit(respond(400, &request_id, body.to_vec()), None, response_out).await;
        return;
    };
    let (answer, stream) = answer(req, &request_id).await;
    emit(finish(answer), stream, response_out).await;
}

/// Writes the response: its body, or the core's body as it streams in.
async fn emit(response: Response, stream: Option<IncomingResponse>, out: ResponseOutparam) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let Ok(fields) = Fields::from_list(&headers) else {
        return;
    };
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(*response.status());
    let mut sink = outgoing.take_body();
    out.set(outgoing);
    match stream {
        None => {
            let _ = sink.send(response.into_body()).await;
        }
        Some(core) => {
            let mut chunks = core.take_body_stream();
            while let Some(Ok(chunk)) = chunks.next().await {
                if sink.send(chunk).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn answer(req: Request, request_id: &str) -> (Answer, Option<IncomingResponse>) {
    let mut rate = None;
    let mut version = None;
    let path = req.path().to_string();
    match gate_and_forward(req, request_id, &mut rate, &mut version).await {
        Ok((response, stream)) => (
            Answer {
                response,
                rate,
                version,
            },
            stream,
        ),
        Err(err) => {
            let mut response = respond(err.status, request_id, err.body().into_bytes());
            if err.status == 405 {
                response.set_header("allow", schema::allowed_methods(&path));
            }
            (
                Answer {
                    response,
                    rate,
                    version,
                },
                None,
            )
        }
    }
}

/// Adds the rate-limit and version headers to a response.
fn finish(answer: Answer) -> Response {
    let Answer {
        mut response,
        rate,
        version,
    } = answer;
    if let Some(rate) = rate {
        for (name, value) in rate.headers() {
            response.set_header(name, value);
        }
    }
    if let Some(version) = version {
        response.set_header("nixo-version", version);
    }
    response
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

async fn gate_and_forward(
    req: Request,
    request_id: &str,
    rate: &mut Option<RateDecision>,
    version: &mut Option<&'static str>,
) -> Result<Forwarded, EdgeError> {
    let method = method_name(req.method());
    let route = schema::find_route(&method, req.path()).map_err(edge::route_error)?;
    let config = config()?;
    let bucket =
        store::open(&variable(VAR_KV_STORE).unwrap_or_else(|| "default".into())).map_err(|_| edge::ERR_KEY_STORE)?;
    let now_ms = unix_now_ms();
    let client = Client::of(&req, &config, now_ms);
    if route.is_public() {
        let decision = client.count(&bucket, "public", 1)?;
        if !decision.allowed {
            *rate = Some(decision);
            return Err(edge::ERR_PUBLIC_RATE_LIMITED);
        }
        return forward_public(&req, route, &config, request_id)
            .await
            .map(|r| (r, None));
    }
    let authorization = req.header("authorization").and_then(|v| v.as_str());
    let (claimed, key) = match edge::check_key_format(authorization) {
        Ok(parsed) => parsed,
        Err(err) => return Err(client.failed(&bucket, err, rate)),
    };
    if !serves(claimed) {
        return Err(edge::ERR_WRONG_ENVIRONMENT);
    }
    if req.body().len() > edge::BODY_LEN_MAX_BYTES {
        return Err(edge::ERR_BODY_TOO_LARGE);
    }
    let record = key_record(&bucket, &config, &client, key, request_id, now_ms, rate).await?;
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

    let resolved = versions::resolve(
        req.header("nixo-version").and_then(|v| v.as_str()),
        record.api_version.as_deref(),
    )
    .map_err(EdgeError::invalid)?;
    *version = Some(resolved);
    if let Some(key) = req.header("idempotency-key")
        && !key.as_str().is_some_and(edge::idempotency_key_ok)
    {
        return Err(edge::ERR_IDEMPOTENCY_KEY);
    }
    if !req.body().is_empty() && !edge::content_type_ok(req.header("content-type").and_then(|v| v.as_str())) {
        return Err(edge::ERR_CONTENT_TYPE);
    }
    if edge::json_depth(req.body()) > edge::JSON_DEPTH_MAX {
        return Err(edge::ERR_JSON_TOO_DEEP);
    }
    let query = req.query();
    let query = (!query.is_empty()).then_some(query);
    let body = versions::upgrade_request(resolved, route.id, req.body()).map_err(EdgeError::invalid)?;
    schema::validate(route, query, &body).map_err(EdgeError::invalid)?;
    // Acting for a customer account: the core checks it is the key's
    // platform's; the edge checks its shape and signs it with the principal.
    let mut principal = record.principal();
    if let Some(value) = req.header(nixo_api::accounts::ACCOUNT_HEADER) {
        let account = value
            .as_str()
            .ok_or_else(|| nixo_api::schema::FieldError::new("Nixo-Account", "Nixo-Account must be an account id"))
            .and_then(nixo_api::accounts::account_header)
            .map_err(EdgeError::invalid)?;
        principal = format!("{principal} {account}");
    }

    forward(&req, route, &config, principal, body, resolved, request_id, now_ms).await
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
    fn of(req: &Request, config: &Config, now_ms: i64) -> Client {
        let text = |name: &str| req.header(name).and_then(|v| v.as_str()).map(str::to_string);
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
async fn forward_public(
    req: &Request,
    route: &Route,
    config: &Config,
    request_id: &str,
) -> Result<Response, EdgeError> {
    if req.body().len() > edge::BODY_LEN_MAX_BYTES {
        return Err(edge::ERR_BODY_TOO_LARGE);
    }
    let query = req.query();
    let query = (!query.is_empty()).then_some(query);
    schema::validate(route, query, req.body()).map_err(EdgeError::invalid)?;
    let path_and_query = req.path_and_query().unwrap_or(req.path()).to_string();
    let signature = signing::sign(
        config.secret.as_bytes(),
        &SignedParts {
            method: route.method,
            path_and_query: &path_and_query,
            body: req.body(),
            principal: "",
            request_id,
        },
        unix_now_ms() / 1000,
    );
    let method = match route.method {
        "POST" => Method::Post,
        _ => Method::Get,
    };
    let mut out = Request::builder();
    out.method(method)
        .uri(edge::forward_url(&config.core_url, &path_and_query))
        .header(signing::REQUEST_ID_HEADER, request_id)
        .header(signing::SIGNATURE_HEADER, signature);
    if !req.body().is_empty() {
        out.header("content-type", "application/json");
    }
    let out = out.body(req.body().to_vec()).build();
    let core: Response = spin_sdk::http::send(out)
        .await
        .map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let mut resp = Response::builder();
    resp.status(*core.status());
    for (name, value) in core.headers() {
        if edge::relay_response_header(name)
            && let Some(value) = value.as_str()
        {
            resp.header(name, value);
        }
    }
    resp.header(signing::REQUEST_ID_HEADER, request_id);
    Ok(resp.body(core.into_body()).build())
}

/// The record of `key`: from the key/value store while fresh, else from the
/// core (and cached). A key the core does not know is remembered as unknown
/// for a while, and counted against the client's address; an address past
/// its failed authentications gets no core lookup for a key never seen.
#[allow(clippy::too_many_arguments)]
async fn key_record(
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
    let signature = signing::sign(
        config.secret.as_bytes(),
        &SignedParts {
            method: "POST",
            path_and_query: path,
            body: key.as_bytes(),
            principal: "",
            request_id,
        },
        now_ms / 1000,
    );
    let ask = Request::builder()
        .method(Method::Post)
        .uri(edge::forward_url(&config.core_url, path))
        .header("content-type", "text/plain")
        .header(signing::REQUEST_ID_HEADER, request_id)
        .header(signing::SIGNATURE_HEADER, signature)
        .body(key.as_bytes().to_vec())
        .build();
    let answer: Response = spin_sdk::http::send(ask)
        .await
        .map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    match *answer.status() {
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
    let mut record = KeyRecord::from_json(answer.body()).ok_or(edge::ERR_CORE_UNAVAILABLE)?;
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
async fn forward(
    req: &Request,
    route: &Route,
    config: &Config,
    principal: String,
    body: Vec<u8>,
    version: &'static str,
    request_id: &str,
    now_ms: i64,
) -> Result<Forwarded, EdgeError> {
    let path_and_query = req.path_and_query().unwrap_or(req.path()).to_string();
    let signature = signing::sign(
        config.secret.as_bytes(),
        &SignedParts {
            method: route.method,
            path_and_query: &path_and_query,
            body: &body,
            principal: &principal,
            request_id,
        },
        now_ms / 1000,
    );
    let mut out = Request::builder();
    out.method(req.method().clone())
        .uri(edge::forward_url(&config.core_url, &path_and_query));
    for name in FORWARDED_HEADERS {
        if let Some(value) = req.header(name).and_then(|v| v.as_str()) {
            out.header(name, value);
        }
    }
    out.header("nixo-version", versions::CURRENT);
    out.header(signing::PRINCIPAL_HEADER, principal.as_str());
    out.header(signing::REQUEST_ID_HEADER, request_id);
    out.header(signing::SIGNATURE_HEADER, signature);
    let out = out.body(body).build();

    let core: IncomingResponse = spin_sdk::http::send(out)
        .await
        .map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let status = core.status();
    let mut resp = Response::builder();
    resp.status(status);
    for (name, value) in core.headers().entries() {
        if edge::relay_response_header(&name)
            && let Ok(value) = std::str::from_utf8(&value)
        {
            resp.header(name, value);
        }
    }
    resp.header(signing::REQUEST_ID_HEADER, request_id);
    // An export is relayed as it streams (any size, flat memory); every
    // other answer is read whole, to translate it for older versions.
    if route.streams_response() && (200..300).contains(&status) {
        return Ok((resp.body(Vec::new()).build(), Some(core)));
    }
    let body = core.into_body().await.map_err(|_| edge::ERR_CORE_UNAVAILABLE)?;
    let body = if (200..300).contains(&status) {
        versions::downgrade_response(version, route.id, &body)
    } else {
        body
    };
    Ok((resp.body(body).build(), None))
}
