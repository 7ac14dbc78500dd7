//! Nixo core host: the payments API, the ledger, the Wasm rule host and the
//! in-process edge that serves the gateway component.
//!
//! A request's path: [`edge`] (gateway component on the public port) →
//! [`api`] (gatekeeper, then a handler such as `api::transfers`) → [`rules`]
//! (fraud plugins) → [`ledger`] (double-entry rows in [`db`]).

pub mod accounts;
pub mod api;
pub mod artefacts;
pub mod auth;
pub mod db;
pub mod edge;
pub mod error;
pub mod ledger;
pub mod money;
pub mod plugin_kit;
pub mod rules;
pub mod server;
pub mod wasm_cache;
