//! The URL a subscription delivers to.

use std::fmt;

use url::Url;

/// An absolute http(s) URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

/// Why a string is not a target URL.
#[derive(Debug, thiserror::Error)]
pub enum InvalidTargetUrl {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    Malformed(#[from] url::ParseError),
    /// A scheme other than http or https.
    #[error("the scheme must be http or https, not {0:?}")]
    Scheme(String),
    /// Credentials in the URL would be logged and shown; refuse them.
    #[error("the URL must not carry a user name or password")]
    Credentials,
}

impl TargetUrl {
    /// Parses a URL a subscription may deliver to.
    pub fn parse(raw: &str) -> Result<Self, InvalidTargetUrl> {
        let url = Url::parse(raw.trim())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidTargetUrl::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidTargetUrl::Credentials);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidTargetUrl::Malformed(url::ParseError::EmptyHost));
        }
        Ok(TargetUrl(url))
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL as stored and requested.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The URL a subscription that forwards paths delivers an event to: its target URL with the
/// event's path appended to the target's own, and the event's query after the target's own. A
/// target that is not a URL is left as it is (its delivery is refused as it would be anyway).
pub fn forwarded_url(target: &str, path: &str, query: &str) -> String {
    let Ok(mut url) = Url::parse(target) else {
        return target.to_owned();
    };
    if !path.is_empty() {
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
    }
    if !query.is_empty() {
        let joined = match url.query() {
            Some(own) if !own.is_empty() => format!("{own}&{query}"),
            _ => query.to_owned(),
        };
        url.set_query(Some(&joined));
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_are_accepted() {
        assert!(TargetUrl::parse("https://hooks.example.com/in?x=1").is_ok());
        assert!(TargetUrl::parse("http://127.0.0.1:9000/").is_ok());
    }

    #[test]
    fn other_schemes_credentials_and_junk_are_refused() {
        for raw in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://u:p@example.com/",
            "not a url",
            "http://",
        ] {
            assert!(TargetUrl::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn a_forwarded_url_appends_the_path_and_the_query_to_the_targets_own() {
        assert_eq!(
            forwarded_url("https://example.com/hooks/", "/orders/create", "a=1"),
            "https://example.com/hooks/orders/create?a=1"
        );
        assert_eq!(
            forwarded_url("https://example.com/hooks?key=k", "/x", "a=1&b=2"),
            "https://example.com/hooks/x?key=k&a=1&b=2"
        );
        assert_eq!(
            forwarded_url("https://example.com", "/x%20y", ""),
            "https://example.com/x%20y"
        );
        assert_eq!(
            forwarded_url("https://example.com/h?k=v", "", ""),
            "https://example.com/h?k=v"
        );
    }
}
