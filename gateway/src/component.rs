//! The Spin entry point: glue between `wasi:http` and the edge logic.

use crate::edge::{self, EdgeError};
use crate::signing::{self, SignedParts};
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

/// Spin variable: base URL of the core (`http://127.0.0.1:8081`).
const VAR_CORE_URL: &str = "core_url";
/// Spin variable (secret): HMAC key shared with the core.
const VAR_SIGNING_SECRET: &str = "gateway_signing_secret";

/// Client headers passed on to the core; everything else stays at the edge
/// (in particular any client-sent `spin-*` header).
const FORWARDED_HEADERS: [&str; 4] = ["authorization", "content-type", "nixo-version", "idempotency-key"];

fn respond(status: u16, request_id: &str, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header(signing::REQUEST_ID_HEADER, request_id)
        .body(body)
        .build()
}

fn error(err: &EdgeError, request_id: &str) -> Response {
    respond(err.status, request_id, "application/json", err.body().into_bytes())
}

fn new_request_id() -> String {
    let mut random = [0u8; 12];
    // wasi:random never fails; an all-zero id is still a valid id.
    let _ = getrandom::fill(&mut random);
    edge::request_id(random)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
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

#[http_component]
async fn handle(req: Request) -> impl IntoResponse {
    let request_id = new_request_id();
    match gate_and_forward(req, &request_id).await {
        Ok(resp) => resp,
        Err(err) => error(&err, &request_id),
    }
}

async fn gate_and_forward(req: Request, request_id: &str) -> Result<Response, EdgeError> {
    edge::route(req.path())?;
    let authorization = req.header("authorization").and_then(|v| v.as_str());
    edge::check_key_format(authorization)?;
    if req.body().len() > edge::BODY_LEN_MAX_BYTES {
        return Err(edge::ERR_BODY_TOO_LARGE);
    }
    edge::check_version(req.header("nixo-version").and_then(|v| v.as_str()))?;
    if let Some(key) = req.header("idempotency-key")
        && !key.as_str().is_some_and(edge::idempotency_key_ok)
    {
        return Err(edge::ERR_IDEMPOTENCY_KEY);
    }
    if edge::json_depth(req.body()) > edge::JSON_DEPTH_MAX {
        return Err(edge::ERR_JSON_TOO_DEEP);
    }

    let core_url = spin_sdk::variables::get(VAR_CORE_URL).map_err(|_| edge::ERR_MISCONFIGURED)?;
    let secret = spin_sdk::variables::get(VAR_SIGNING_SECRET).map_err(|_| edge::ERR_MISCONFIGURED)?;
    if secret.len() < signing::SECRET_LEN_MIN_BYTES {
        return Err(edge::ERR_MISCONFIGURED);
    }

    let path_and_query = req.path_and_query().unwrap_or(req.path()).to_string();
    let method = method_name(req.method());
    let signature = signing::sign(
        secret.as_bytes(),
        &SignedParts {
            method: &method,
            path_and_query: &path_and_query,
            body: req.body(),
            authorization: authorization.unwrap_or_default(),
            request_id,
        },
        unix_now(),
    );

    let mut out = Request::builder();
    out.method(req.method().clone())
        .uri(edge::forward_url(&core_url, &path_and_query));
    for name in FORWARDED_HEADERS {
        if let Some(value) = req.header(name).and_then(|v| v.as_str()) {
            out.header(name, value);
        }
    }
    out.header(signing::REQUEST_ID_HEADER, request_id);
    out.header(signing::SIGNATURE_HEADER, signature);
    let out = out.body(req.into_body()).build();

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
    let resp = resp.body(core.into_body()).build();
    Ok(resp)
}
