//! The URL half of the NUL rule (docs/decisions/0037): a query parameter that decodes to text
//! holding U+0000 is refused with 400 `invalid_text` naming it (a bad query parameter is a
//! malformed request, like every other), and a path segment holding one names nothing, so it is
//! 404; both before any handler (or authentication) sees them. Bodies are checked where they are parsed
//! ([`crate::error::parse_json`], the CSV import).

use salvo::prelude::*;

use crate::error::ApiError;

/// A NUL can only reach a decoded path or query as `%00` (a raw one is not a valid URI), so one
/// search of the raw URL clears almost every request.
#[handler]
pub async fn refuse_nul(req: &mut Request, res: &mut Response, ctrl: &mut FlowCtrl) {
    match nul_in_url(req) {
        Some(Nul::Query(field)) => {
            let field = field.replace('\0', "\\u0000");
            ApiError::BadRequest {
                code: "invalid_text",
                message: format!(
                    "{field}: contains U+0000 (NUL), which Herald does not accept in text"
                ),
                details: Some(serde_json::json!({ "field": field })),
            }
            .render(res);
        }
        Some(Nul::Path) => ApiError::NotFound.render(res),
        None => return,
    }
    ctrl.skip_rest();
}

enum Nul {
    Query(String),
    Path,
}

fn nul_in_url(req: &Request) -> Option<Nul> {
    let uri = req.uri();
    let raw = |s: &str| s.contains("%00");
    if uri.query().is_some_and(raw) {
        let found = req
            .queries()
            .iter_all()
            .find(|(k, values)| k.contains('\0') || values.iter().any(|v| v.contains('\0')));
        if let Some((name, _)) = found {
            return Some(Nul::Query(format!("query.{name}")));
        }
    }
    if raw(uri.path()) {
        return Some(Nul::Path);
    }
    None
}
