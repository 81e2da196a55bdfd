//! The path and query an event was posted with after its ingest token, kept with the event (for
//! filters, its page, and the subscriptions that forward them).

use actix_web::HttpRequest;

use super::IngestError;
use crate::domain::IngestToken;

/// The longest path after the token that is kept, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest query that is kept, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The path after the token (`""`, or starting with `/`) and the raw query, as received (still
/// percent-encoded). Refused: either too long, or a path with a `.` or `..` segment, which
/// would climb out of the endpoint's own path once forwarded.
pub fn path_and_query(
    request: &HttpRequest,
    token: &IngestToken,
) -> Result<(String, String), IngestError> {
    let uri = request.uri();
    let path = uri
        .path()
        .split_once(token.as_str())
        .map_or("", |(_, rest)| rest);
    let query = uri.query().unwrap_or_default();
    if path.len() > MAX_PATH_BYTES {
        return Err(IngestError::BadPath(
            "the path after the ingest token is longer than 1024 bytes",
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(IngestError::BadPath("the query is longer than 4096 bytes"));
    }
    if path.split('/').any(is_dot_segment) {
        return Err(IngestError::BadPath(
            "the path after the ingest token may not hold `.` or `..` segments",
        ));
    }
    Ok((path.to_owned(), query.to_owned()))
}

/// Whether a path segment means "this" or "the parent" directory, percent-encoded or not.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn split(uri: &str) -> Result<(String, String), IngestError> {
        let token = IngestToken::generate();
        let request = TestRequest::post()
            .uri(&uri.replace("TOKEN", token.as_str()))
            .to_http_request();
        path_and_query(&request, &token)
    }

    #[test]
    fn the_path_after_the_token_and_the_query_are_kept_as_received() {
        let (path, query) = split("/ingest/TOKEN/orders/create%20d?shop=a%20b&x=1").expect("kept");
        assert_eq!(path, "/orders/create%20d");
        assert_eq!(query, "shop=a%20b&x=1");
        assert_eq!(
            split("/ingest/TOKEN").expect("kept"),
            ("".into(), "".into())
        );
        assert_eq!(
            split("/ingest/TOKEN/").expect("kept"),
            ("/".into(), "".into())
        );
    }

    #[test]
    fn dot_segments_and_overlong_parts_are_refused() {
        for uri in [
            "/ingest/TOKEN/../admin",
            "/ingest/TOKEN/a/./b",
            "/ingest/TOKEN/%2E%2e/admin",
            "/ingest/TOKEN/a/..",
        ] {
            assert!(
                matches!(split(uri), Err(IngestError::BadPath(_))),
                "{uri} was kept"
            );
        }
        let long_path = format!("/ingest/TOKEN/{}", "a".repeat(MAX_PATH_BYTES));
        assert!(matches!(split(&long_path), Err(IngestError::BadPath(_))));
        let long_query = format!("/ingest/TOKEN?q={}", "a".repeat(MAX_QUERY_BYTES));
        assert!(matches!(split(&long_query), Err(IngestError::BadPath(_))));
        assert!(split("/ingest/TOKEN/a..b/.well-known").is_ok());
    }
}
