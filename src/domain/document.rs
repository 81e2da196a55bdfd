//! A request body as a JSON document: what ingest stores beside the raw bytes, filters read, and
//! providers' checks look into.

use serde_json::Value;

/// The body as a JSON document, when it is a JSON object or array PostgreSQL can store
/// (`jsonb` refuses the NUL character, which JSON can only carry escaped). Anything else is kept
/// as bytes only.
pub fn as_document(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') || body.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_and_arrays_become_documents() {
        assert_eq!(
            as_document(b" {\"a\": 1}"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(as_document(b"[1,2]"), Some(serde_json::json!([1, 2])));
    }

    #[test]
    fn other_bodies_stay_bytes_only() {
        for body in [
            &b"a=1&b=2"[..],
            b"<xml/>",
            b"42",
            b"\"text\"",
            b"{broken",
            b"",
            b"{\"a\":\"\\u0000\"}",
        ] {
            assert_eq!(
                as_document(body),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
