//! End-to-end tests: the real `WuzapiClient` against the simulator on a random port (and against
//! misbehaving servers), so the client's classification and the simulator's WuzAPI answers are
//! checked against each other. One binary; the modules live in `tests/gateway/`.

#[path = "gateway/support.rs"]
mod support;

#[path = "gateway/faults.rs"]
mod faults;
#[path = "gateway/send.rs"]
mod send;
#[path = "gateway/session.rs"]
mod session;
