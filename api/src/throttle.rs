//! The request side of the attempt counters: the client address a request counts by. The
//! counters themselves run without a request (`herald_accounts::throttle`, docs/accounts.md).

use std::net::IpAddr;

use herald_accounts::throttle::{client_ip, client_key};

/// [`client_ip`] of a request.
pub fn client_ip_of(req: &salvo::Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    client_ip(req.remote_addr().ip(), forwarded_for(req), trusted)
}

fn forwarded_for(req: &salvo::Request) -> Option<&str> {
    req.headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
}

/// [`client_key`] of a request.
pub fn client_of(req: &salvo::Request, trusted: &[IpAddr]) -> String {
    client_key(req.remote_addr().ip(), forwarded_for(req), trusted)
}
