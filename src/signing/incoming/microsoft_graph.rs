//! Microsoft Graph change notifications. Creating a subscription first sends
//! `POST ?validationToken=…`, answered `200 text/plain` with the decoded token. Notifications are
//! not signed: each item of `value` carries the `clientState` given when the subscription was
//! created, and a batch is accepted only when every item's equals the configured one.

use super::{Answer, Incoming, Rejection, Validator, same_secret};

/// Checks Graph's `clientState` and answers its validation requests.
pub(super) struct MicrosoftGraph {
    client_state: Vec<u8>,
}

impl MicrosoftGraph {
    pub(super) fn new(client_state: &str) -> Self {
        MicrosoftGraph {
            client_state: client_state.as_bytes().to_vec(),
        }
    }
}

impl Validator for MicrosoftGraph {
    fn verify(&self, request: &Incoming<'_>) -> Result<(), Rejection> {
        let batch = request.json().ok_or(Rejection::Malformed)?;
        let items = batch
            .get("value")
            .and_then(|value| value.as_array())
            .filter(|items| !items.is_empty())
            .ok_or(Rejection::Malformed)?;
        // Every item is checked, whatever the earlier ones gave, so timing says nothing of which.
        let mut all = Ok(());
        for item in items {
            let held = match item.get("clientState").and_then(|state| state.as_str()) {
                None => Err(Rejection::Missing),
                Some(state) if same_secret(state.as_bytes(), &self.client_state) => Ok(()),
                Some(_) => Err(Rejection::Mismatch),
            };
            all = all.and(held);
        }
        all
    }

    fn handshake(&self, request: &Incoming<'_>) -> Option<Result<Answer, Rejection>> {
        let token = request
            .query_param("validationToken")
            .filter(|_| request.is_post())?;
        Some(Ok(Answer::text(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Check, NOW, POST, URL, request};
    use super::*;
    use actix_web::http::header::HeaderMap;

    const STATE: &str = "secretClientValue";

    fn batch(states: &[Option<&str>]) -> Vec<u8> {
        let items: Vec<_> = states
            .iter()
            .map(|state| {
                let mut item = serde_json::json!({
                    "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                    "changeType": "created",
                    "resource": "Users/9f6f3d6e/messages/AAMkAD",
                    "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"
                });
                if let Some(state) = state {
                    item["clientState"] = (*state).into();
                }
                item
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "value": items })).unwrap()
    }

    #[test]
    fn a_batch_passes_only_when_every_item_carries_the_client_state() {
        let graph = MicrosoftGraph::new(STATE);
        let none = HeaderMap::new();
        assert_eq!(
            graph.check(&none, &batch(&[Some(STATE), Some(STATE)]), NOW),
            Ok(())
        );
        assert_eq!(
            graph.check(&none, &batch(&[Some(STATE), Some("guess")]), NOW),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            graph.check(&none, &batch(&[Some(STATE), None]), NOW),
            Err(Rejection::Missing)
        );
        assert_eq!(
            graph.check(&none, &batch(&[]), NOW),
            Err(Rejection::Malformed)
        );
        assert_eq!(
            graph.check(&none, b"not json", NOW),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn the_validation_token_is_answered_decoded_as_plain_text() {
        let none = HeaderMap::new();
        let query = "validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+0b1c3b0c";
        let url = format!("{URL}?{query}");
        assert_eq!(
            MicrosoftGraph::new(STATE).handshake(&request(&POST, &none, query, &url, b"")),
            Some(Ok(Answer::text(
                "Validation: Testing client application reachability for subscription Request-Id: 0b1c3b0c"
            )))
        );
        assert_eq!(
            MicrosoftGraph::new(STATE).handshake(&request(&POST, &none, "", URL, b"")),
            None
        );
    }
}
