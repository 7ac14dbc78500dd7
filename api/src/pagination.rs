//! List parameters every list route takes: `limit` (1–100, default 10),
//! `starting_after` / `ending_before` (the id of an object on the previous
//! page; at most one of the two). Route parsers call [`ListParams::take`]
//! for each query pair before their own filters.

use crate::schema::{Checked, FieldError, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};

/// Longest object id accepted as a cursor.
pub const CURSOR_ID_LEN_MAX: usize = 64;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cursor {
    /// The newest objects.
    #[default]
    First,
    /// Objects older than this id (the next page).
    StartingAfter(String),
    /// Objects newer than this id (the previous page).
    EndingBefore(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub limit: i64,
    pub cursor: Cursor,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            limit: LIST_LIMIT_DEFAULT,
            cursor: Cursor::First,
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
                } else if self.cursor != Cursor::First {
                    Err(FieldError::new(
                        key,
                        "Send at most one of starting_after and ending_before",
                    ))
                } else {
                    self.cursor = if key == "starting_after" {
                        Cursor::StartingAfter(value.to_string())
                    } else {
                        Cursor::EndingBefore(value.to_string())
                    };
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
    fn list_parameters_are_checked_and_exclusive() {
        let mut p = ListParams::default();
        assert_eq!(p.take("limit", "100"), Some(Ok(())));
        assert_eq!(p.limit, 100);
        assert_eq!(p.take("limit", "0").unwrap().unwrap_err().field, "limit");
        assert_eq!(p.take("limit", "101").unwrap().unwrap_err().field, "limit");
        assert_eq!(p.take("other", "1"), None);
        assert_eq!(p.take("starting_after", "dec_abc"), Some(Ok(())));
        assert_eq!(p.cursor, Cursor::StartingAfter("dec_abc".into()));
        let err = p.take("ending_before", "dec_x").unwrap().unwrap_err();
        assert_eq!(err.field, "ending_before");
        let mut q = ListParams::default();
        assert!(q.take("ending_before", "a b").unwrap().is_err());
        assert!(
            q.take("ending_before", &"x".repeat(CURSOR_ID_LEN_MAX + 1))
                .unwrap()
                .is_err()
        );
        assert_eq!(q.take("ending_before", "10057"), Some(Ok(())));
    }
}
