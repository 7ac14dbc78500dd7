//! WebAssembly artefacts built by `build.rs` and bundled into the binary.

/// The gateway component (`gateway/`, wasm32-wasip2).
pub const GATEWAY_WASM: &[u8] = include_bytes!(env!("NIXO_GATEWAY_WASM"));
/// The reference fraud rule (`plugins/fraud-check/`), as a component.
pub const FRAUD_CHECK_WASM: &[u8] = include_bytes!(env!("NIXO_FRAUD_CHECK_WASM"));
/// The IBAN payout rule (`plugins/iban/`), as a component.
pub const IBAN_WASM: &[u8] = include_bytes!(env!("NIXO_IBAN_WASM"));
/// The M-Pesa payout rule (`plugins/mpesa/`), as a component.
pub const MPESA_WASM: &[u8] = include_bytes!(env!("NIXO_MPESA_WASM"));
