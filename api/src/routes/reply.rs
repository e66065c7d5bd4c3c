//! Success answers other than `200` with JSON: each type sets its status when it is written and
//! declares the same status, with its body's schema, in the OpenAPI document, so the document
//! cannot say 200 where the handler answers 201 or 204 (decision 0046).

use salvo::http::StatusCode;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

fn json_response<T: ToSchema>(components: &mut Components, what: &str) -> oapi::Response {
    oapi::Response::new(what).add_content("application/json", T::to_schema(components))
}

/// `201 Created` with the new object.
pub struct Created<T>(pub T);

impl<T: Serialize + Send> Scribe for Created<T> {
    fn render(self, res: &mut Response) {
        res.status_code(StatusCode::CREATED);
        res.render(Json(self.0));
    }
}

impl<T: ToSchema> EndpointOutRegister for Created<T> {
    fn register(components: &mut Components, operation: &mut Operation) {
        operation
            .responses
            .insert("201", json_response::<T>(components, "created"));
    }
}

/// `202 Accepted`: taken, the work goes on after the answer.
pub struct Accepted<T>(pub T);

impl<T: Serialize + Send> Scribe for Accepted<T> {
    fn render(self, res: &mut Response) {
        res.status_code(StatusCode::ACCEPTED);
        res.render(Json(self.0));
    }
}

impl<T: ToSchema> EndpointOutRegister for Accepted<T> {
    fn register(components: &mut Components, operation: &mut Operation) {
        operation
            .responses
            .insert("202", json_response::<T>(components, "accepted"));
    }
}

/// `201 Created` when the object is new, `200 OK` when an existing one was updated.
pub struct Upserted<T> {
    pub created: bool,
    pub body: T,
}

impl<T: Serialize + Send> Scribe for Upserted<T> {
    fn render(self, res: &mut Response) {
        res.status_code(if self.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        });
        res.render(Json(self.body));
    }
}

impl<T: ToSchema> EndpointOutRegister for Upserted<T> {
    fn register(components: &mut Components, operation: &mut Operation) {
        let updated = json_response::<T>(components, "updated");
        let created = json_response::<T>(components, "created");
        operation.responses.insert("200", updated);
        operation.responses.insert("201", created);
    }
}

/// `204 No Content`.
pub struct NoContent;

impl Scribe for NoContent {
    fn render(self, res: &mut Response) {
        res.status_code(StatusCode::NO_CONTENT);
    }
}

impl EndpointOutRegister for NoContent {
    fn register(_components: &mut Components, operation: &mut Operation) {
        operation
            .responses
            .insert("204", oapi::Response::new("done; no body"));
    }
}
