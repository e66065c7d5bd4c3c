//! Message templates.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::template::{Template, TemplateCommand, TemplateKind, TemplateStatus};
use herald_domain::template_body::TemplateBody;
use herald_projections::templates::{self as read, TemplateRow};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

const BODY_LIMIT: usize = 256 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    name: String,
    /// `text` (image templates are not available yet).
    #[serde(rename = "type")]
    kind: String,
    /// Text with variables: `{{ name }}`, `{{ phone }}`, any recipient variable.
    body: Option<String>,
    image_url: Option<String>,
    image_base64: Option<String>,
    caption: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    name: Option<String>,
    body: Option<String>,
    caption: Option<String>,
    /// `active`, `inactive` or `archived`.
    status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    id: Uuid,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    body: Option<String>,
    caption: Option<String>,
    image_url: Option<String>,
    status: String,
    /// Variables the body and caption use.
    variables: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(row: TemplateRow) -> TemplateView {
    let mut variables = std::collections::BTreeSet::new();
    for text in [&row.body, &row.caption].into_iter().flatten() {
        if let Ok(b) = TemplateBody::parse(text) {
            variables.extend(b.variables());
        }
    }
    TemplateView {
        id: row.id,
        name: row.name,
        kind: row.kind,
        body: row.body,
        caption: row.caption,
        image_url: row.image_url,
        status: row.status,
        variables: variables.into_iter().collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn parse_body(field: &str, text: Option<String>) -> Result<Option<TemplateBody>, ApiError> {
    text.map(|t| TemplateBody::parse(&t).map_err(|e| ApiError::validation(field, e.to_string())))
        .transpose()
}

fn parse_status(raw: &str) -> Result<TemplateStatus, ApiError> {
    match raw {
        "active" => Ok(TemplateStatus::Active),
        "inactive" => Ok(TemplateStatus::Inactive),
        "archived" => Ok(TemplateStatus::Archived),
        _ => Err(ApiError::validation(
            "status",
            "must be active, inactive or archived",
        )),
    }
}

async fn fetch(state: &AppState, tenant_id: Uuid, id: Uuid) -> Result<TemplateView, ApiError> {
    state
        .wait_projected(read::NAME, Template::TYPE, &id.to_string())
        .await?;
    read::get(&state.pool, tenant_id, id)
        .await?
        .map(view)
        .ok_or(ApiError::NotFound)
}

/// Creates a template. A body that does not parse is 422 with the line and column.
#[endpoint(tags("templates"), request_body = CreateTemplate, status_codes(201, 400, 401, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<Json<TemplateView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateTemplate = json_body(req, BODY_LIMIT).await?;
    let kind = match body.kind.as_str() {
        "text" => TemplateKind::Text,
        "image" => {
            return Err(ApiError::validation(
                "type",
                "image templates are not available yet; use `text`",
            ))
        }
        _ => return Err(ApiError::validation("type", "must be `text` or `image`")),
    };
    if body.image_url.is_some() || body.image_base64.is_some() || body.caption.is_some() {
        return Err(ApiError::validation(
            "image_url",
            "text templates take a body only (no image_url, image_base64 or caption)",
        ));
    }
    let text = parse_body("body", body.body)?
        .ok_or_else(|| ApiError::validation("body", "text templates need a body"))?;
    let id = Uuid::new_v4();
    state
        .templates
        .execute(
            &id.to_string(),
            TemplateCommand::Create {
                tenant_id: caller.tenant_id,
                name: body.name,
                kind,
                body: Some(text),
                caption: None,
                image_url: None,
                at: Utc::now(),
            },
        )
        .await?;
    let view = fetch(&state, caller.tenant_id, id).await?;
    res.status_code(StatusCode::CREATED);
    Ok(Json(view))
}

/// This tenant's templates, newest first.
#[endpoint(tags("templates"), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<TemplateView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let page = read::list(&state.pool, caller.tenant_id, limit, cursor).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One template.
#[endpoint(tags("templates"), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<TemplateView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    read::get(&state.pool, caller.tenant_id, id)
        .await?
        .map(|r| Json(view(r)))
        .ok_or(ApiError::NotFound)
}

/// Changes a template's name, body or status. Running campaigns keep the text they started with.
#[endpoint(tags("templates"), request_body = UpdateTemplate, status_codes(200, 400, 401, 404, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn update(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<TemplateView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: UpdateTemplate = json_body(req, BODY_LIMIT).await?;
    let status = body.status.as_deref().map(parse_status).transpose()?;
    state
        .templates
        .execute(
            &id.to_string(),
            TemplateCommand::Update {
                tenant_id: caller.tenant_id,
                name: body.name,
                body: parse_body("body", body.body)?,
                caption: parse_body("caption", body.caption)?,
                status,
                at: Utc::now(),
            },
        )
        .await?;
    Ok(Json(fetch(&state, caller.tenant_id, id).await?))
}

/// Deletes a template. Campaigns already created from it are not affected.
#[endpoint(tags("templates"), status_codes(204, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(
    id: PathParam<String>,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    state
        .templates
        .execute(
            &id.to_string(),
            TemplateCommand::Delete {
                tenant_id: caller.tenant_id,
                at: Utc::now(),
            },
        )
        .await?;
    state
        .wait_projected(read::NAME, Template::TYPE, &id.to_string())
        .await?;
    res.status_code(StatusCode::NO_CONTENT);
    Ok(())
}
