//! Completes the OpenAPI document with the error statuses that follow from an operation's shape
//! rather than from its handler (decision 0046), so no operation can forget them:
//!
//! - credentials (`security`): 401 when they are missing or wrong, 429 when a limited plan's API
//!   calls per window are spent (the authentication hoop counts them);
//! - a request body: 400 (not JSON), 413 (too large), 422 (an invalid field);
//! - a path parameter: 404 (no such object, or another tenant's);
//! - a query parameter: 400 (`invalid_query`, `invalid_cursor`).
//!
//! What only some handlers answer (403, 409, 502, 503...) stays in their `status_codes(...)`.

use salvo::oapi::{OpenApi, RefOr};
use salvo::oapi::{Parameter, ParameterIn};

use crate::error::{error_response, ERROR_STATUSES};

/// The error statuses an operation declares because of its shape.
pub fn shape_statuses(
    secured: bool,
    has_body: bool,
    parameters: &[RefOr<Parameter>],
) -> Vec<&'static str> {
    let mut statuses = Vec::new();
    let located = |place: ParameterIn| {
        parameters
            .iter()
            .any(|p| matches!(p, RefOr::Type(p) if p.parameter_in == place))
    };
    if secured {
        statuses.extend(["401", "429"]);
    }
    if has_body {
        statuses.extend(["400", "413", "422"]);
    }
    if located(ParameterIn::Path) {
        statuses.push("404");
    }
    if located(ParameterIn::Query) {
        statuses.push("400");
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// An OpenAPI path template for a salvo route: salvo's rest-of-path wildcards (`{**path}`,
/// `{*path}`) are plain `{path}` parameters in OpenAPI, which has no wildcard syntax.
pub fn template_of(route: &str) -> String {
    route.replace("{**", "{").replace("{*", "{")
}

/// Adds [`shape_statuses`] to every operation of `doc` that lacks them, and writes every path
/// as an OpenAPI template ([`template_of`]).
pub fn complete(mut doc: OpenApi) -> OpenApi {
    let routes = std::mem::take(&mut *doc.paths);
    for (route, item) in routes {
        doc.paths.insert(template_of(&route), item);
    }
    let components = &mut doc.components;
    for item in doc.paths.values_mut() {
        for operation in item.operations.values_mut() {
            let secured = operation.securities.as_ref().is_some_and(|s| !s.is_empty());
            let statuses = shape_statuses(
                secured,
                operation.request_body.is_some(),
                &operation.parameters.0,
            );
            for status in statuses {
                if operation.responses.get(status).is_some() {
                    continue;
                }
                let what = ERROR_STATUSES
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or("error", |(_, what)| what);
                operation
                    .responses
                    .insert(status, error_response(components, what));
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::template_of;

    #[test]
    fn wildcards_become_plain_path_parameters() {
        assert_eq!(
            template_of("/api/v1/sessions/{id}/gateway/{**path}"),
            "/api/v1/sessions/{id}/gateway/{path}"
        );
        assert_eq!(template_of("/a/{*rest}"), "/a/{rest}");
        assert_eq!(
            template_of("/api/v1/templates/{id}"),
            "/api/v1/templates/{id}"
        );
    }
}
