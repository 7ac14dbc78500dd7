//! The Nixo API contract, shared by the gateway component and the core so
//! the two cannot disagree: the route table and the request rules
//! ([`schema`]), list parameters ([`pagination`]), the gateway signature
//! ([`signing`]), API versions and their translation ([`versions`]), key
//! records and rate limits ([`access`]) and header rules ([`headers`]).
//!
//! No I/O and no dependency on either side; it builds for `wasm32-wasip2`
//! (inside the gateway) and natively (inside the core).

pub mod access;
pub mod accounts;
pub mod headers;
pub mod pagination;
pub mod payments;
pub mod payouts;
pub mod reviews;
pub mod schema;
pub mod signing;
pub mod transactions;
pub mod types;
pub mod versions;
pub mod webhooks;
