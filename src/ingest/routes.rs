//! Where a source's events go: its provider check and its subscriptions' filters, read once and
//! kept per process, so that an ingest request checks the signature and evaluates the filters
//! before its one statement. What is kept may be stale (another replica edited the source): the
//! statement stores the event only if the source's routing version is still the one read here,
//! and otherwise ingest forgets it, reads it again and routes the event anew.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix_web::http::Method;

use crate::db::models::source::Routing;
use crate::domain::{
    Filter, FilterInput, IngestResponse, IngestToken, SourceId, SubscriptionId, WorkspaceId,
};
use crate::signing::incoming::{Answer, Incoming, ProviderConfig, Rejection, Validator};

/// The most sources whose routes a process keeps; past it, it starts afresh (a route costs one
/// query to read again).
const MAX_ROUTES: usize = 10_000;

/// How one source routes its events, as read at `version`.
pub struct Route {
    pub source_id: SourceId,
    /// The source's owner, whose pages hear of its events.
    pub workspace_id: WorkspaceId,
    /// The provider's kind, or `none`: how its refusals are counted.
    pub kind: &'static str,
    /// Checks the provider's signature, when the source names a provider.
    pub validator: Option<Box<dyn Validator>>,
    /// A header carrying the source's credential, beyond those never kept: dropped and masked.
    pub credential_header: Option<String>,
    /// A query parameter carrying the source's credential: left out of what is kept.
    pub credential_query: Option<String>,
    /// What an accepted request is answered with, when not the default.
    pub response: Option<IngestResponse>,
    pub version: i64,
    /// Each subscription, with its filter (`None`: it takes every event).
    subscriptions: Vec<(SubscriptionId, Option<Filter>)>,
}

/// Why a source's stored routing cannot be used: a bug or a bad migration, since both the
/// provider and the filters are checked when they are saved.
#[derive(Debug, thiserror::Error)]
pub enum BadRoute {
    #[error("its provider check cannot be read: {0}")]
    Provider(serde_json::Error),
    #[error("its response cannot be read: {0}")]
    Response(serde_json::Error),
    #[error("the filter of subscription {0} is invalid: {1}")]
    Filter(SubscriptionId, crate::domain::FilterError),
}

impl Route {
    /// Reads a source's stored routing.
    pub fn new(routing: Routing) -> Result<Route, BadRoute> {
        let provider = routing
            .provider
            .map(serde_json::from_value::<ProviderConfig>)
            .transpose()
            .map_err(BadRoute::Provider)?;
        let response = routing
            .response
            .map(serde_json::from_value::<IngestResponse>)
            .transpose()
            .map_err(BadRoute::Response)?;
        let subscriptions = routing
            .subscriptions
            .into_iter()
            .map(|(id, filter)| {
                let filter = filter
                    .as_ref()
                    .map(Filter::parse)
                    .transpose()
                    .map_err(|error| BadRoute::Filter(id, error))?;
                Ok((id, filter))
            })
            .collect::<Result<_, BadRoute>>()?;
        Ok(Route {
            source_id: routing.source_id,
            workspace_id: routing.workspace_id,
            kind: provider.as_ref().map_or("none", ProviderConfig::kind),
            validator: provider.as_ref().map(ProviderConfig::validator),
            credential_header: provider
                .as_ref()
                .and_then(ProviderConfig::credential_header),
            credential_query: provider.as_ref().and_then(ProviderConfig::credential_query),
            response,
            version: routing.version,
            subscriptions,
        })
    }

    /// What to do with a request: answer the provider's handshake, or take it as an event when
    /// it is a `POST` that the provider's check (if any) accepts.
    pub fn admit(&self, request: &Incoming<'_>) -> Result<Admission, Refusal> {
        let refused = |rejection, handshake| Refusal {
            rejection,
            handshake,
        };
        let Some(validator) = &self.validator else {
            return if request.method == Method::POST {
                Ok(Admission::Event)
            } else {
                Err(refused(Rejection::WrongMethod, false))
            };
        };
        match validator.handshake(request) {
            Some(Ok(answer)) => Ok(Admission::Handshake(answer)),
            Some(Err(rejection)) => Err(refused(rejection, true)),
            None if request.method != Method::POST => Err(refused(Rejection::WrongMethod, false)),
            None => validator
                .verify(request)
                .map(|()| Admission::Event)
                .map_err(|rejection| refused(rejection, false)),
        }
    }

    /// The subscriptions whose filters the request passes, in id order.
    pub fn matching(&self, request: &FilterInput<'_>) -> Vec<SubscriptionId> {
        self.subscriptions
            .iter()
            .filter(|(_, filter)| filter.as_ref().is_none_or(|filter| filter.matches(request)))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// What a request admitted by a source's check is.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The provider's handshake: answered by the relay, not stored.
    Handshake(Answer),
    /// An event, to store and route.
    Event,
}

/// Why a source's check refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub rejection: Rejection,
    /// The request was the provider's handshake.
    pub handshake: bool,
}

/// The routes this process has read, by ingest token; shared by its HTTP workers.
#[derive(Default)]
pub struct Routes {
    known: RwLock<HashMap<IngestToken, Arc<Route>>>,
}

impl Routes {
    /// The route kept for `token`, if any.
    pub fn get(&self, token: &IngestToken) -> Option<Arc<Route>> {
        self.known
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .cloned()
    }

    /// Keeps a route just read for `token`.
    pub fn keep(&self, token: &IngestToken, route: Arc<Route>) {
        let mut known = self
            .known
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= MAX_ROUTES && !known.contains_key(token) {
            known.clear();
        }
        known.insert(token.clone(), route);
    }

    /// Forgets the route kept for `token`: it is out of date, or the token is gone.
    pub fn forget(&self, token: &IngestToken) {
        self.known
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderMap;
    use serde_json::json;

    fn routing(subscriptions: Vec<(SubscriptionId, Option<serde_json::Value>)>) -> Routing {
        Routing {
            source_id: SourceId(uuid::Uuid::new_v4()),
            workspace_id: WorkspaceId(uuid::Uuid::new_v4()),
            provider: None,
            response: None,
            version: 3,
            subscriptions,
        }
    }

    #[test]
    fn a_route_keeps_the_subscriptions_whose_filters_a_request_passes() {
        let (all, invoices, charges) = (
            SubscriptionId(uuid::Uuid::new_v4()),
            SubscriptionId(uuid::Uuid::new_v4()),
            SubscriptionId(uuid::Uuid::new_v4()),
        );
        let route = Route::new(routing(vec![
            (all, None),
            (
                invoices,
                Some(json!({"body": {"type": {"$startsWith": "invoice."}}})),
            ),
            (charges, Some(json!({"body": {"type": "charge.succeeded"}}))),
        ]))
        .expect("valid");
        let body = json!({"type": "invoice.paid"});
        let (headers, query) = (json!({}), json!({}));
        let request = FilterInput {
            body: Some(&body),
            headers: &headers,
            query: &query,
            path: "",
        };
        assert_eq!(route.matching(&request), vec![all, invoices]);
        assert_eq!(route.version, 3);
    }

    #[test]
    fn a_stored_filter_that_does_not_parse_is_reported_with_its_subscription() {
        let bad = SubscriptionId(uuid::Uuid::new_v4());
        let error = Route::new(routing(vec![(bad, Some(json!({"body": {"$gtt": 1}})))]))
            .err()
            .expect("refused");
        assert!(matches!(error, BadRoute::Filter(id, _) if id == bad));
    }

    #[test]
    fn a_kept_route_is_found_until_it_is_forgotten() {
        let routes = Routes::default();
        let token = IngestToken::generate();
        assert!(routes.get(&token).is_none());
        routes.keep(
            &token,
            Arc::new(Route::new(routing(vec![])).expect("valid")),
        );
        assert_eq!(routes.get(&token).expect("kept").version, 3);
        routes.forget(&token);
        assert!(routes.get(&token).is_none());
    }

    fn request<'a>(method: &'a Method, headers: &'a HeaderMap, query: &'a str) -> Incoming<'a> {
        Incoming::new(
            method,
            headers,
            query,
            b"{}",
            "http://relay.example.com/ingest/t",
            chrono::Utc::now().timestamp(),
        )
    }

    #[test]
    fn without_a_provider_posts_are_events_and_other_methods_refused() {
        let route = Route::new(routing(vec![])).expect("valid");
        let none = HeaderMap::new();
        assert_eq!(
            route.admit(&request(&Method::POST, &none, "")),
            Ok(Admission::Event)
        );
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            assert_eq!(
                route.admit(&request(&method, &none, "challenge=1")),
                Err(Refusal {
                    rejection: Rejection::WrongMethod,
                    handshake: false
                })
            );
        }
    }

    #[test]
    fn a_providers_handshake_is_answered_and_its_events_checked() {
        let mut meta = routing(vec![]);
        meta.provider = Some(json!({"kind": "meta", "secret": "s", "verify_token": "v"}));
        let route = Route::new(meta).expect("valid");
        assert_eq!(route.kind, "meta");
        let none = HeaderMap::new();
        let verification = "hub.mode=subscribe&hub.verify_token=v&hub.challenge=42";
        assert_eq!(
            route.admit(&request(&Method::GET, &none, verification)),
            Ok(Admission::Handshake(Answer {
                content_type: "text/plain; charset=utf-8",
                body: "42".to_owned()
            }))
        );
        assert_eq!(
            route.admit(&request(
                &Method::GET,
                &none,
                "hub.mode=subscribe&hub.verify_token=x"
            )),
            Err(Refusal {
                rejection: Rejection::Handshake,
                handshake: true
            })
        );
        assert_eq!(
            route.admit(&request(&Method::GET, &none, "")),
            Err(Refusal {
                rejection: Rejection::WrongMethod,
                handshake: false
            })
        );
        assert_eq!(
            route.admit(&request(&Method::POST, &none, "")),
            Err(Refusal {
                rejection: Rejection::Missing,
                handshake: false
            })
        );
    }

    #[test]
    fn a_source_with_an_api_key_names_its_credential_and_its_answer_is_kept() {
        let mut keyed = routing(vec![]);
        keyed.provider = Some(json!({"kind": "api_key", "query": "key", "value": "k"}));
        keyed.response = Some(json!({"status": 200, "body": "ok"}));
        let route = Route::new(keyed).expect("valid");
        assert_eq!(route.credential_query.as_deref(), Some("key"));
        assert_eq!(route.response.expect("kept").status, 200);
    }
}
