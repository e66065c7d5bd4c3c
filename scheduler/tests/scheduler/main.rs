//! The scheduler's own tests: dispatch and the cancel sweep against a fresh database and a fake
//! gateway that records every call (nothing goes over HTTP).

mod cancel;
mod dispatch;
mod opt_outs;
mod safe_sending;
mod support;
