//! A request's id, which log lines about the request, and about what it brought, carry. Taken
//! from the client when sane (see the HTTP middleware in `crate::request_id`).

use std::fmt;

/// The longest request id taken from a client.
const MAX_LEN: usize = 128;

/// One request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id, if it is one to repeat in logs and headers: 1 to 128 characters of
    /// letters, digits and `-_.:+/=@` (UUIDs, ULIDs, base64, `trace@span` ids). Anything else
    /// (empty, too long, spaces, quotes, control characters) is not, and a new id is made.
    pub fn sane(presented: &str) -> Option<RequestId> {
        let sane = !presented.is_empty()
            && presented.len() <= MAX_LEN
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b));
        sane.then(|| RequestId(presented.to_owned()))
    }

    /// A new id: a UUID v7, so ids sort by time.
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_it_is_safe_to_repeat() {
        for kept in [
            "0193a5c2-7f3e-7c1a-9b1e-2f4d5e6a7b8c",
            "01JDZ3K8X5",
            "req_a1B2c3D4e5F6",
            "abc+/=",
            "trace@span:1",
        ] {
            assert_eq!(RequestId::sane(kept).unwrap().as_str(), kept);
        }
        for refused in [
            "",
            "has space",
            "quote\"",
            "new\nline",
            "ünïcode",
            &"x".repeat(129),
        ] {
            assert!(RequestId::sane(refused).is_none(), "{refused:?}");
        }
        assert!(RequestId::sane(&"x".repeat(128)).is_some());
    }

    #[test]
    fn made_up_ids_are_distinct_and_sane() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert!(RequestId::sane(a.as_str()).is_some());
    }
}
