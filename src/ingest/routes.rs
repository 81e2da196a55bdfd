//! Where a source's events go: its provider check and its subscriptions' filters, read once and
//! kept per process, so that an ingest request checks the signature and evaluates the filters
//! before its one statement. What is kept may be stale (another replica edited the source): the
//! statement stores the event only if the source's routing version is still the one read here,
//! and otherwise ingest forgets it, reads it again and routes the event anew.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix_web::http::header::HeaderMap;

use crate::db::models::source::Routing;
use crate::domain::{Filter, FilterInput, IngestToken, SourceId, SubscriptionId, UserId};
use crate::signing::incoming::{ProviderConfig, Rejection, Validator};

/// The most sources whose routes a process keeps; past it, it starts afresh (a route costs one
/// query to read again).
const MAX_ROUTES: usize = 10_000;

/// How one source routes its events, as read at `version`.
pub struct Route {
    pub source_id: SourceId,
    /// The source's owner, whose pages hear of its events.
    pub user_id: UserId,
    /// Checks the provider's signature, when the source names a provider.
    pub validator: Option<Box<dyn Validator>>,
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
    #[error("the filter of subscription {0} is invalid: {1}")]
    Filter(SubscriptionId, crate::domain::FilterError),
}

impl Route {
    /// Reads a source's stored routing.
    pub fn new(routing: Routing) -> Result<Route, BadRoute> {
        let validator = routing
            .provider
            .map(serde_json::from_value::<ProviderConfig>)
            .transpose()
            .map_err(BadRoute::Provider)?
            .map(|provider| provider.validator());
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
            user_id: routing.user_id,
            validator,
            version: routing.version,
            subscriptions,
        })
    }

    /// Accepts a request whose provider signature holds, or any when the source checks none.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
        match &self.validator {
            Some(validator) => validator.verify(headers, body, chrono::Utc::now().timestamp()),
            None => Ok(()),
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
    use serde_json::json;

    fn routing(subscriptions: Vec<(SubscriptionId, Option<serde_json::Value>)>) -> Routing {
        Routing {
            source_id: SourceId(uuid::Uuid::new_v4()),
            user_id: UserId(uuid::Uuid::new_v4()),
            provider: None,
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
}
