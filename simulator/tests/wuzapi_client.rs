//! End-to-end tests: the real `WuzapiClient` against the simulator on a random port (and against
//! misbehaving servers), so the client's classification and the simulator's WuzAPI answers are
//! checked against each other. One binary; the modules live in `tests/gateway/`.

#[path = "wuzapi_client/support.rs"]
mod support;

#[path = "wuzapi_client/cloud_api.rs"]
mod cloud_api;
#[path = "wuzapi_client/faults.rs"]
mod faults;
#[path = "wuzapi_client/send.rs"]
mod send;
#[path = "wuzapi_client/session.rs"]
mod session;
