//! List parameters every list route takes: `limit` (1–100, default 10),
//! `starting_after` / `ending_before` (ids of objects from another page). Route parsers call [`ListParams::take`]
//! for each query pair before their own filters.

use crate::schema::{Checked, FieldError, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};

/// Longest object id accepted as a cursor.
pub const CURSOR_ID_LEN_MAX: usize = 64;

/// A page: at most `limit` objects, newest first, older than
/// `starting_after` (the next page) and newer than `ending_before` (the
/// previous page); with both, the objects between the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub limit: i64,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            limit: LIST_LIMIT_DEFAULT,
            starting_after: None,
            ending_before: None,
        }
    }
}

/// An object id as a cursor: `prefix_` and letters or digits, or digits alone
/// (transaction ids).
pub fn cursor_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CURSOR_ID_LEN_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !id.starts_with('_')
}

/// Latest Unix time a filter takes (9999-12-31T23:59:59Z).
pub const UNIX_SECONDS_MAX: i64 = 253_402_300_799;

/// A `created[…]` filter value: Unix seconds.
pub fn unix_seconds(key: &str, value: &str) -> Checked<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|s| (0..=UNIX_SECONDS_MAX).contains(s))
        .ok_or_else(|| FieldError::new(key, format!("{key} must be a Unix time in seconds")))
}

/// A `created[gte]` / `created[lte]` filter, Unix seconds, both inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreatedRange {
    pub gte: Option<i64>,
    pub lte: Option<i64>,
}

impl CreatedRange {
    /// Consumes one query pair if it is `created[gte]` or `created[lte]`.
    pub fn take(&mut self, key: &str, value: &str) -> Option<Checked<()>> {
        let slot = match key {
            "created[gte]" => &mut self.gte,
            "created[lte]" => &mut self.lte,
            _ => return None,
        };
        Some(unix_seconds(key, value).map(|seconds| *slot = Some(seconds)))
    }
}

impl ListParams {
    /// Consumes one query pair if it is a list parameter: `None` when the
    /// key is not one (the route's own parser decides).
    pub fn take(&mut self, key: &str, value: &str) -> Option<Checked<()>> {
        let result = match key {
            "limit" => value
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=LIST_LIMIT_MAX).contains(l))
                .map(|l| self.limit = l)
                .ok_or_else(|| FieldError::new("limit", format!("limit must be between 1 and {LIST_LIMIT_MAX}"))),
            "starting_after" | "ending_before" => {
                if !cursor_id_ok(value) {
                    Err(FieldError::new(
                        key,
                        format!("{key} must be the id of an object from a list"),
                    ))
                } else {
                    let slot = if key == "starting_after" {
                        &mut self.starting_after
                    } else {
                        &mut self.ending_before
                    };
                    *slot = Some(value.to_string());
                    Ok(())
                }
            }
            _ => return None,
        };
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_checked() {
        let mut p = ListParams::default();
        assert_eq!(p.take("limit", "100"), Some(Ok(())));
        assert_eq!(p.limit, 100);
        assert_eq!(p.take("limit", "0").unwrap().unwrap_err().field, "limit");
        assert_eq!(p.take("limit", "101").unwrap().unwrap_err().field, "limit");
        assert_eq!(p.take("other", "1"), None);
        assert_eq!(p.take("starting_after", "dec_abc"), Some(Ok(())));
        assert_eq!(p.take("ending_before", "dec_x"), Some(Ok(())));
        assert_eq!(p.starting_after.as_deref(), Some("dec_abc"));
        assert_eq!(p.ending_before.as_deref(), Some("dec_x"));
        let mut q = ListParams::default();
        assert!(q.take("ending_before", "a b").unwrap().is_err());
        assert!(q.take("ending_before", "_x").unwrap().is_err());
        assert!(
            q.take("ending_before", &"x".repeat(CURSOR_ID_LEN_MAX + 1))
                .unwrap()
                .is_err()
        );
        assert_eq!(q.take("ending_before", "10057"), Some(Ok(())));
    }
}
