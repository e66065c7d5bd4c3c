//! The URL half of the NUL rule (docs/decisions/0037): a path segment or query parameter that
//! decodes to text holding U+0000 is refused with 422 `invalid_text` naming it, before any
//! handler (or authentication) sees it. Bodies are checked where they are parsed
//! ([`crate::error::parse_json`], the CSV import).

use salvo::prelude::*;

use crate::error::ApiError;

/// A NUL can only reach a decoded path or query as `%00` (a raw one is not a valid URI), so one
/// search of the raw URL clears almost every request.
#[handler]
pub async fn refuse_nul(req: &mut Request, res: &mut Response, ctrl: &mut FlowCtrl) {
    if let Some(field) = nul_in_url(req) {
        ApiError::invalid_text(&field).render(res);
        ctrl.skip_rest();
    }
}

fn nul_in_url(req: &Request) -> Option<String> {
    let uri = req.uri();
    let raw = |s: &str| s.contains("%00");
    if uri.query().is_some_and(raw) {
        let found = req
            .queries()
            .iter_all()
            .find(|(k, values)| k.contains('\0') || values.iter().any(|v| v.contains('\0')));
        if let Some((name, _)) = found {
            return Some(format!("query.{name}"));
        }
    }
    if raw(uri.path()) {
        let named = req
            .params()
            .iter()
            .find(|(_, v)| v.contains('\0'))
            .map(|(name, _)| format!("path.{name}"));
        return Some(named.unwrap_or_else(|| "path".to_string()));
    }
    None
}
