//! The reviews routes' request rules: the `GET /v1/reviews` filters and the
//! approve / decline body. The edge validates with these functions and the
//! core parses with them.

use crate::pagination::{CreatedRange, ListParams};
use crate::schema::{self, Checked, FieldError};
use serde_json::Value;

/// Longest note a reviewer may leave, in characters.
pub const NOTE_LEN_MAX: usize = 500;
/// Longest reason code a filter may name.
pub const REASON_LEN_MAX: usize = 64;

/// `GET /v1/reviews` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewFilter {
    /// `true`: open ones only; `false`: closed ones only.
    pub open: Option<bool>,
    /// Reviews one of whose reasons is this code.
    pub reason: Option<String>,
    pub created: CreatedRange,
}

/// Parses the `GET /v1/reviews` query.
pub fn reviews_query(query: Option<&str>) -> Checked<(ReviewFilter, ListParams)> {
    let (mut filter, mut page) = (ReviewFilter::default(), ListParams::default());
    for (key, value) in schema::query_pairs(query) {
        if let Some(taken) = page.take(&key, &value).or_else(|| filter.created.take(&key, &value)) {
            taken?;
            continue;
        }
        match key.as_str() {
            "open" => {
                filter.open = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(FieldError::new("open", "open must be true or false")),
                })
            }
            "reason" => {
                let ok = !value.is_empty()
                    && value.len() <= REASON_LEN_MAX
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(FieldError::new(
                        "reason",
                        format!("reason must be a reason code of 1 to {REASON_LEN_MAX} letters, digits or _"),
                    ));
                }
                filter.reason = Some(value);
            }
            other => return Err(FieldError::new(other, format!("Received unknown parameter: {other}"))),
        }
    }
    Ok((filter, page))
}

/// The approve / decline body: an optional `note` (an empty body is none).
pub fn decision_request(body: &[u8]) -> Checked<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &["note"])?;
    match map.get("note") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(note)) => schema::bounded(note, "note", NOTE_LEN_MAX).map(Some),
        Some(_) => Err(FieldError::new("note", "note must be a string")),
    }
}

/// A review id in a path: `rev_` and letters or digits.
pub fn review_id_ok(id: &str) -> bool {
    id.len() > 4 && id.len() <= 64 && id.starts_with("rev_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_bodies() {
        let (f, _) = reviews_query(Some("open=true&reason=velocity_1h&limit=5")).unwrap();
        assert_eq!((f.open, f.reason.as_deref()), (Some(true), Some("velocity_1h")));
        assert_eq!(reviews_query(Some("open=yes")).unwrap_err().field, "open");
        assert_eq!(reviews_query(Some("reason=a%20b")).unwrap_err().field, "reason");
        assert_eq!(reviews_query(Some("status=open")).unwrap_err().field, "status");
        assert_eq!(decision_request(b"").unwrap(), None);
        assert_eq!(decision_request(br#"{"note":" ok "}"#).unwrap().as_deref(), Some("ok"));
        assert_eq!(decision_request(br#"{"note":1}"#).unwrap_err().field, "note");
        assert_eq!(decision_request(br#"{"why":"x"}"#).unwrap_err().field, "why");
        let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(NOTE_LEN_MAX + 1));
        assert_eq!(decision_request(long.as_bytes()).unwrap_err().field, "note");
        assert!(review_id_ok("rev_1A2b"));
        assert!(!review_id_ok("rev_"));
        assert!(!review_id_ok("pyt_1A2b"));
    }
}
