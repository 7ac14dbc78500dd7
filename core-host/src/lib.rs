//! Nixo core host: the payments API, the ledger, the Wasm rule host and the
//! in-process edge that serves the gateway component.
//!
//! A request's path: [`edge`] (gateway component on the public port) →
//! [`api`] (gatekeeper, idempotency layer, then a thin handler such as
//! `api::transfers`) → [`services`] (the business operation) → [`rules`]
//! (fraud plugins) → [`ledger`] (double-entry rows and their [`events`] in
//! one transaction, in [`db`]). Background work runs as [`jobs`].

/// Every binary that links the core (the `nixo` command, the tests and the
/// benches) allocates with mimalloc: under the 16-connection transfer load,
/// glibc's malloc and free were 12 % of the process's CPU (wasmtime stores,
/// hyper and serde buffers made and dropped per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod accounts;
pub mod api;
pub mod artefacts;
pub mod auth;
pub mod chaos;
pub mod clock;
pub mod db;
pub mod edge;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod pagination;
pub mod plugin_kit;
pub mod providers;
pub mod rail_wiring;
pub mod resources;
pub mod rules;
pub mod server;
pub mod services;
pub mod sql_exec;
pub mod sqlite_direct;
pub mod sqlite_pcache;
pub mod wasm_cache;
pub mod webhooks;
