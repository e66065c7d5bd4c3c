//! Message templates.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use herald_domain::template::{
    validate_name, ImageRef, Template, TemplateCommand, TemplateKind, TemplateStatus,
};
use herald_domain::template_body::TemplateBody;
use herald_media::{self as media, ImageSource, MediaPolicy};
use herald_projections::templates::{self as read, TemplateRow};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::{Created, NoContent};
use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

/// Bodies carry `image_base64`: 16 MB of image is about 22.4 MB of base64, plus the rest.
const BODY_LIMIT: usize = 23 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    name: String,
    /// `text` or `image`.
    #[serde(rename = "type")]
    kind: String,
    /// Text templates: text with variables: `{{ name }}`, `{{ phone }}`, any recipient variable.
    body: Option<String>,
    /// Image templates: an http(s) URL Herald fetches once, now (public addresses only; at most
    /// 16 MB; JPEG, PNG, WebP or GIF; at most 8,192 pixels a side). See docs/images.md.
    image_url: Option<String>,
    /// Image templates: the image itself, as raw base64 or a `data:image/...;base64,` URL.
    image_base64: Option<String>,
    /// Image templates: the caption, with variables like `body`.
    caption: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    name: Option<String>,
    body: Option<String>,
    caption: Option<String>,
    /// Image templates: a new image from this URL (fetched and processed again).
    image_url: Option<String>,
    /// Image templates: a new image as base64.
    image_base64: Option<String>,
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
    /// Image templates: the processed image every recipient gets.
    image: Option<ImageView>,
    status: String,
    /// Variables the body and caption use.
    variables: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The processed image of an image template.
#[derive(Serialize, ToSchema)]
pub struct ImageView {
    /// SHA-256 of the JPEG sent (hex).
    sha256: String,
    /// Always `image/jpeg`: Herald re-encodes every image.
    content_type: &'static str,
    width: i32,
    height: i32,
    /// Size of the JPEG sent.
    bytes: i64,
}

fn view(row: TemplateRow) -> TemplateView {
    let mut variables = std::collections::BTreeSet::new();
    // Stored text was checked when saved: compiled from the process's cache, never rehearsed.
    for text in [&row.body, &row.caption].into_iter().flatten() {
        variables.extend(TemplateBody::stored(text.clone()).variables());
    }
    TemplateView {
        id: row.id,
        name: row.name,
        kind: row.kind,
        body: row.body,
        caption: row.caption,
        image_url: row.image_url,
        image: match (
            row.image_sha256,
            row.image_width,
            row.image_height,
            row.image_bytes,
        ) {
            (Some(sha256), Some(width), Some(height), Some(bytes)) => Some(ImageView {
                sha256,
                content_type: "image/jpeg",
                width,
                height,
                bytes,
            }),
            _ => None,
        },
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

/// `image_url` or `image_base64`, exactly one, with the field it came in.
fn image_source(
    image_url: Option<String>,
    image_base64: Option<String>,
) -> Result<Option<(ImageSource, &'static str)>, ApiError> {
    match (image_url, image_base64) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "image_url",
            "give image_url or image_base64, not both",
        )),
        (Some(url), None) => Ok(Some((ImageSource::Url(url), "image_url"))),
        (None, Some(data)) => Ok(Some((ImageSource::Base64(data), "image_base64"))),
        (None, None) => Ok(None),
    }
}

/// Fetches (or decodes) and processes the image once, and stores it by hash before any event
/// refers to it. Refusals are 422 `invalid_image` naming `field`.
async fn prepare_image(
    state: &AppState,
    tenant_id: Uuid,
    source: ImageSource,
    field: &str,
) -> Result<ImageRef, ApiError> {
    Ok(prepare_and_store_image(state, tenant_id, source, field)
        .await?
        .image_ref())
}

/// The image pipeline for a request (templates and single sends): fetched or decoded with the
/// SSRF and size rules, processed, and stored (and marked used, decision 0024) before anything
/// refers to it. Refusals are 422 `invalid_image` naming `field`; no room in the tenant's share of
/// downloads or decodes within the wait is 503 `busy` (decision 0043).
pub(crate) async fn prepare_and_store_image(
    state: &AppState,
    tenant_id: Uuid,
    source: ImageSource,
    field: &str,
) -> Result<media::PreparedImage, ApiError> {
    let policy = MediaPolicy {
        allow_private: state.settings.allow_private_media_urls,
    };
    let prepared = media::prepare_image(source, &policy, &state.pools.media, tenant_id)
        .await
        .map_err(|e| ApiError::image(field, e))?;
    media::store(&state.pool, &prepared).await?;
    Ok(prepared)
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

/// Creates a template. A body or caption that does not parse is 422 with the line and column.
/// An image template's image is fetched (or decoded from base64) and processed now, once: a URL
/// Herald refuses, a failed fetch, or a file that is too large or not an image is 422
/// `invalid_image` with the reason.
#[endpoint(tags("templates"), request_body = CreateTemplate, status_codes(201, 400, 401, 409, 413, 422, 503), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<TemplateView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateTemplate = json_body(req, BODY_LIMIT).await?;
    let kind = match body.kind.as_str() {
        "text" => TemplateKind::Text,
        "image" => TemplateKind::Image,
        _ => return Err(ApiError::validation("type", "must be `text` or `image`")),
    };
    // Cheap checks first: a bad name or caption costs no fetch.
    validate_name(&body.name)?;
    let command = match kind {
        TemplateKind::Text => {
            if body.image_url.is_some() || body.image_base64.is_some() || body.caption.is_some() {
                return Err(ApiError::validation(
                    "image_url",
                    "text templates take a body only (no image_url, image_base64 or caption)",
                ));
            }
            let text = parse_body("body", body.body)?
                .ok_or_else(|| ApiError::validation("body", "text templates need a body"))?;
            TemplateCommand::Create {
                tenant_id: caller.tenant_id,
                name: body.name,
                kind,
                body: Some(text),
                caption: None,
                image_url: None,
                image: None,
                at: Utc::now(),
            }
        }
        TemplateKind::Image => {
            if body.body.is_some() {
                return Err(ApiError::validation(
                    "body",
                    "image templates have a caption, not a body",
                ));
            }
            let caption = parse_body("caption", body.caption)?;
            let (source, field) =
                image_source(body.image_url, body.image_base64)?.ok_or_else(|| {
                    ApiError::validation(
                        "image_url",
                        "image templates need image_url or image_base64",
                    )
                })?;
            let image = prepare_image(&state, caller.tenant_id, source, field).await?;
            TemplateCommand::Create {
                tenant_id: caller.tenant_id,
                name: body.name,
                kind,
                body: None,
                caption,
                image_url: image.source_url.clone(),
                image: Some(image),
                at: Utc::now(),
            }
        }
    };
    let id = Uuid::new_v4();
    state.templates.execute(&id.to_string(), command).await?;
    let view = fetch(&state, caller.tenant_id, id).await?;
    Ok(Created(view))
}

/// This tenant's templates, newest first.
#[endpoint(tags("templates"), status_codes(200, 400, 401, 429), security(["bearer" = []], ["api_key" = []]))]
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
#[endpoint(tags("templates"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<TemplateView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    read::get(&state.pool, caller.tenant_id, id)
        .await?
        .map(|r| Json(view(r)))
        .ok_or(ApiError::NotFound)
}

/// Changes a template's name, body, caption, image or status. A new `image_url` or
/// `image_base64` is fetched and processed again. Running campaigns keep what they started with.
#[endpoint(tags("templates"), request_body = UpdateTemplate, status_codes(200, 400, 401, 404, 409, 413, 422, 503), security(["bearer" = []], ["api_key" = []]))]
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
    let name = body.name.map(|n| validate_name(&n)).transpose()?;
    let text = parse_body("body", body.body)?;
    let caption = parse_body("caption", body.caption)?;
    let image = match image_source(body.image_url, body.image_base64)? {
        None => None,
        Some((source, field)) => {
            // Another tenant's template (or a text one) is refused before anything is fetched.
            let current = read::get(&state.pool, caller.tenant_id, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            if current.kind != TemplateKind::Image.as_str() {
                return Err(ApiError::validation(field, "text templates have no image"));
            }
            Some(prepare_image(&state, caller.tenant_id, source, field).await?)
        }
    };
    state
        .templates
        .execute(
            &id.to_string(),
            TemplateCommand::Update {
                tenant_id: caller.tenant_id,
                name,
                body: text,
                caption,
                status,
                image,
                at: Utc::now(),
            },
        )
        .await?;
    Ok(Json(fetch(&state, caller.tenant_id, id).await?))
}

/// Deletes a template. Campaigns already created from it are not affected.
#[endpoint(tags("templates"), status_codes(204, 401, 404, 409), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(id: PathParam<String>, depot: &mut Depot) -> Result<NoContent, ApiError> {
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
    Ok(NoContent)
}
