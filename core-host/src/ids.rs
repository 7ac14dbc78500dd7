//! Random object ids: a type prefix (`pyt_`, `dep_`, `rev_`, `we_`) and
//! base-62 characters from the thread's CSPRNG.

use rand::Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random base-62 characters.
pub fn base62(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// `prefix` and 20 random base-62 characters (≈ 119 bits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", base62(20))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_their_prefix_and_length() {
        let id = super::new_id("rev_");
        assert!(id.starts_with("rev_") && id.len() == 24);
        assert!(id[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(super::new_id("rev_"), id);
    }
}
