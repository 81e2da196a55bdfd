//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and
//! the types they take and answer with, so that it describes what the code does. The answers'
//! `Option` fields are marked `required`: serde writes them as `null`, never leaves them out.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{events, issues, listen, sources, subscriptions, team};
use crate::issues::notify::NotificationPayload;
use crate::problem::Problem;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The API's description: every operation, what it takes, what it answers and the schemas of
/// both.
#[derive(OpenApi)]
#[openapi(
    info(title = "Spenza API"),
    paths(
        subscriptions::create,
        subscriptions::list,
        subscriptions::get,
        subscriptions::edit,
        subscriptions::delete,
        events::list,
        subscriptions::replay,
        subscriptions::rotate_secret,
        events::list_all,
        events::get,
        events::attempts,
        events::replay,
        events::get_delivery,
        events::replay_delivery,
        events::retry_delivery,
        sources::create,
        sources::list,
        sources::get,
        sources::edit,
        sources::delete,
        sources::events,
        sources::rejections,
        listen::connect,
        team::list_members,
        team::change_role,
        team::remove_member,
        team::invite,
        team::revoke_invitation,
        team::create_key,
        team::revoke_key,
        team::audit_log,
        issues::list,
        issues::get,
        issues::change,
        issues::list_channels,
        issues::create_channel,
        issues::get_channel,
        issues::edit_channel,
        issues::delete_channel,
        issues::test_channel,
    ),
    components(
        schemas(Problem, NotificationPayload),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Invalid,
            Unexpected,
            Unavailable,
        )
    ),
    modifiers(&BearerKeys),
    // Every operation needs a key; the document itself is served without one, outside it.
    security(("bearer" = [])),
    tags(
        (name = "sources", description = "Where providers send events: ingest URLs and provider checks"),
        (name = "subscriptions", description = "Where a source's events are delivered"),
        (name = "events", description = "What came in, how its delivery went, and replaying it"),
        (name = "members", description = "The workspace's people and keys, their roles, and the audit log"),
        (name = "issues", description = "What the relay noticed going wrong, and the channels it tells: email, Slack, and webhooks whose payload is `NotificationPayload`"),
    ),
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the operations require: an API key, sent as
/// `Authorization: Bearer <key>`.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An API key, sent as `Authorization: Bearer <key>`."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document, built once.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// `GET /api/v1/openapi.json`: the document, to anyone: it holds nothing secret.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::api::{MOUNTED, SCOPE};

    /// The methods a path item may hold an operation for.
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// The document as served.
    fn served() -> Value {
        serde_json::to_value(&*DOCUMENT).unwrap()
    }

    /// Every operation of the document: its method, its path and the operation itself.
    fn operations(document: &Value) -> Vec<(&str, &str, &Value)> {
        let paths = document["paths"]
            .as_object()
            .expect("the document has paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                METHODS.iter().filter_map(move |method| {
                    item.get(*method)
                        .map(|operation| (*method, path.as_str(), operation))
                })
            })
            .collect()
    }

    /// Every `$ref` in `value`, however deep.
    fn references<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(reference)) => found.push(reference),
                        _ => references(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_describes_exactly_the_mounted_routes() {
        let document = served();
        let documented: BTreeSet<(String, String)> = operations(&document)
            .into_iter()
            .map(|(method, path, _)| (method.to_owned(), path.to_owned()))
            .collect();
        let mounted: BTreeSet<(String, String)> = MOUNTED
            .iter()
            .map(|(method, path)| ((*method).to_owned(), format!("{SCOPE}{path}")))
            .collect();
        assert_eq!(mounted.len(), MOUNTED.len(), "a route is mounted twice");
        let undocumented: Vec<_> = mounted.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "mounted, not documented: {undocumented:?}"
        );
        let unmounted: Vec<_> = documented.difference(&mounted).collect();
        assert!(
            unmounted.is_empty(),
            "documented, not mounted: {unmounted:?}"
        );
    }

    #[test]
    fn every_operation_requires_a_bearer_key() {
        let document = served();
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["type"],
            "http"
        );
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (method, path, operation) in operations(&document) {
            // An operation's own requirements replace the document's; each one is an
            // alternative, so every alternative must ask for the key.
            let alternatives = operation
                .get("security")
                .or_else(|| document.get("security"))
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{method} {path} states no security"));
            assert!(!alternatives.is_empty(), "{method} {path} requires nothing");
            for alternative in alternatives {
                assert!(
                    alternative.get("bearer").is_some(),
                    "{method} {path} can be called without a key: {alternative}"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_unique_operation_ids() {
        let document = served();
        let version = document["openapi"].as_str().expect("an openapi field");
        assert!(version.starts_with("3.1"), "{version}");
        let operations = operations(&document);
        let ids: BTreeSet<&str> = operations
            .iter()
            .map(|(method, path, operation)| {
                operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            })
            .collect();
        assert_eq!(ids.len(), operations.len(), "operation ids repeat: {ids:?}");
    }

    #[test]
    fn every_reference_names_a_component_that_exists() {
        let document = served();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty(), "the document refers to no component");
        for reference in found {
            assert!(
                reference.starts_with("#/components/"),
                "{reference} is not a component"
            );
            assert!(
                document.pointer(&reference[1..]).is_some(),
                "{reference} names nothing"
            );
        }
    }

    #[test]
    fn the_document_parses_as_valid_openapi_3_1() {
        let json = serde_json::to_string(&*DOCUMENT).unwrap();
        let spec = oas3::from_json(&json).expect("the document is OpenAPI 3.1");
        spec.validate_version().expect("a 3.1 version");
        assert_eq!(spec.operations().count(), MOUNTED.len());
        for (path, method, operation) in spec.operations() {
            let place = format!("{method} {path}");
            for parameter in &operation.parameters {
                let parameter = parameter.resolve(&spec).expect(&place);
                if let Some(schema) = parameter.schema {
                    schema.resolve(&spec).expect(&place);
                }
            }
            let request = operation.request_body(&spec).expect(&place);
            let responses = operation.responses.iter().flatten();
            let responses: Vec<_> = responses
                .map(|(status, response)| {
                    response
                        .resolve(&spec)
                        .unwrap_or_else(|e| panic!("{place} {status}: {e}"))
                })
                .collect();
            assert!(!responses.is_empty(), "{place} has no response");
            let contents = request
                .iter()
                .map(|body| &body.content)
                .chain(responses.iter().map(|response| &response.content));
            for media in contents.flat_map(|content| content.values()) {
                media.schema(&spec).expect(&place);
            }
        }
        let components = spec.components.as_ref().expect("components");
        for (name, schema) in &components.schemas {
            schema.resolve(&spec).expect(name);
        }
    }
}
