//! Issues the relay opens on its own when something breaks, the channels that tell a workspace
//! about them, and the other closed sets of names stored as text (a subscription's kind).

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use diesel::{AsExpression, FromSqlRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A name that is not one of a text enum's.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not one of {1}")]
pub struct UnknownName(String, &'static str);

/// A closed set of names, stored as text and spelled the same in the API.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression,
            FromSqlRow, ToSchema,
        )]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every one, in the order they are shown.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Its name, as stored and as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == name)
                    .ok_or_else(|| UnknownName(name.to_owned(), concat!($($text, " "),+)))
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }
    };
}

named!(
    /// What went wrong.
    IssueKind {
        /// The circuit breaker disabled a subscription.
        SubscriptionDisabled = "subscription_disabled",
        /// Deliveries of one subscription reached the graveyard, for one kind of failure.
        DeliveriesFailed = "deliveries_failed",
        /// A source keeps refusing requests (typically: a wrong secret).
        SourceRejecting = "source_rejecting",
        /// A subscription's oldest undelivered event waits longer than its threshold.
        SubscriptionLagging = "subscription_lagging",
    }
);

named!(
    /// Where an issue is: `open` until someone acknowledges it or its condition clears.
    IssueState {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
);

named!(
    /// How a subscription delivers: over HTTP to its target URL, or to the `spenza listen`
    /// sessions connected to it.
    SubscriptionKind {
        Http = "http",
        Cli = "cli",
    }
);

named!(
    /// How a channel tells.
    ChannelKind {
        Email = "email",
        Slack = "slack",
        Webhook = "webhook",
    }
);

impl IssueKind {
    /// What it is called on pages and in messages.
    pub fn title(self) -> &'static str {
        match self {
            IssueKind::SubscriptionDisabled => "Subscription disabled",
            IssueKind::DeliveriesFailed => "Deliveries failed",
            IssueKind::SourceRejecting => "Source refusing requests",
            IssueKind::SubscriptionLagging => "Subscription falling behind",
        }
    }

    /// Whether it is a condition that lasts (counted once each time it begins) rather than a
    /// stream of occurrences (each counted).
    pub fn is_ongoing(self) -> bool {
        matches!(
            self,
            IssueKind::SubscriptionDisabled | IssueKind::SubscriptionLagging
        )
    }
}

impl IssueState {
    /// Whether it still needs someone's attention.
    pub fn is_unresolved(self) -> bool {
        self != IssueState::Resolved
    }
}

/// The class of a failed delivery, from its last error and its endpoint, so that a thousand
/// failures of one kind make one issue: "HTTP 500 from api.example.com", "timeout",
/// "connection refused", "connection failed", "refused by the relay", …
pub fn failure_class(last_error: Option<&str>, target_url: &str) -> String {
    let error = last_error.unwrap_or("unknown error");
    let host = url::Url::parse(target_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the endpoint".to_owned());
    if let Some(rest) = error.strip_prefix("HTTP ") {
        let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return format!("HTTP {code} from {host}");
    }
    if error.starts_with("timed out") {
        return format!("timeout at {host}");
    }
    let lower = error.to_ascii_lowercase();
    if lower.contains("ssrf guard") {
        return format!("{host} refused by the SSRF guard");
    }
    if let Some(rest) = lower.strip_prefix("connection failed: ") {
        let why = if rest.contains("refused") {
            "connection refused"
        } else if rest.contains("dns") || rest.contains("resolve") || rest.contains("lookup") {
            "name not resolved"
        } else if rest.contains("certificate") || rest.contains("tls") {
            "TLS failed"
        } else {
            "connection failed"
        };
        return format!("{why} at {host}");
    }
    let head = error.split(':').next().unwrap_or(error).trim();
    format!("{head} at {host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for kind in IssueKind::ALL {
            assert_eq!(kind.as_str().parse::<IssueKind>().unwrap(), *kind);
        }
        for state in IssueState::ALL {
            assert_eq!(state.as_str().parse::<IssueState>().unwrap(), *state);
        }
        for kind in ChannelKind::ALL {
            assert_eq!(kind.as_str().parse::<ChannelKind>().unwrap(), *kind);
        }
        assert!("closed".parse::<IssueState>().is_err());
        assert_eq!(
            serde_json::to_value(IssueKind::DeliveriesFailed).unwrap(),
            "deliveries_failed"
        );
    }

    #[test]
    fn failures_are_classed_by_what_happened_and_where() {
        let url = "https://api.example.com/hooks";
        assert_eq!(
            failure_class(Some("HTTP 500 Internal Server Error"), url),
            "HTTP 500 from api.example.com"
        );
        assert_eq!(
            failure_class(Some("HTTP 302 Found: redirect to /x not followed"), url),
            "HTTP 302 from api.example.com"
        );
        assert_eq!(
            failure_class(Some("timed out after 10s"), url),
            "timeout at api.example.com"
        );
        assert_eq!(
            failure_class(
                Some("connection failed: Connection refused (os error 111)"),
                url
            ),
            "connection refused at api.example.com"
        );
        assert_eq!(
            failure_class(Some("connection failed: something else"), url),
            "connection failed at api.example.com"
        );
        assert_eq!(
            failure_class(
                Some("connection failed: refused by the SSRF guard: 10.0.0.1 is private"),
                url
            ),
            "api.example.com refused by the SSRF guard"
        );
        assert_eq!(
            failure_class(Some("refused by the SSRF guard: 10.0.0.1 is private"), url),
            "api.example.com refused by the SSRF guard"
        );
        assert_eq!(
            failure_class(Some("request failed: body error"), "not a url"),
            "request failed at the endpoint"
        );
    }
}
