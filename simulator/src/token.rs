//! Who a user route is for.

use salvo::Request;

/// The user token of a user route: WuzAPI reads the `Token` header (any case), never
/// `Authorization`.
pub(crate) fn user_token(req: &Request) -> Option<&str> {
    req.headers()
        .get("token")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty())
}
