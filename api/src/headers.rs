//! Header rules both sides apply: the idempotency key's format and the
//! request id's shape.

/// Longest `Idempotency-Key` accepted, in bytes (Stripe's limit).
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// An `Idempotency-Key`, when present, is 1 to 255 printable ASCII characters.
pub fn idempotency_key_ok(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_LEN_MAX && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A request id: `req_` and 24 lower-case hex digits from 12 random bytes.
pub fn request_id(random: [u8; 12]) -> String {
    format!("req_{}", hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_up_to_the_limit() {
        assert!(idempotency_key_ok("order-7781"));
        assert!(idempotency_key_ok(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX)));
        assert!(!idempotency_key_ok(""));
        assert!(!idempotency_key_ok(&"k".repeat(IDEMPOTENCY_KEY_LEN_MAX + 1)));
        assert!(!idempotency_key_ok("with space"));
        assert_eq!(request_id([0xab; 12]).len(), 28);
    }
}
