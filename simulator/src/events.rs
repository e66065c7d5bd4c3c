//! Session events posted to a user's webhook like WuzAPI does (`QR` after connecting an unpaired
//! user, `Connected` once paired, `LoggedOut`, `Disconnected`), in the receipt encoding, signed
//! with the user's HMAC key when it has one. Each post runs in its own task, so the request that
//! caused it is answered at once.

use herald_gateway::webhook::session::{session_event, SessionSignal};
use herald_gateway::webhook::Encoding;

use super::receipts::{post_event, Hook};
use super::state::Sim;
use super::users::User;

/// The event type a signal is posted (and subscribed) as.
fn event_type(signal: &SessionSignal) -> &'static str {
    match signal {
        SessionSignal::Connected => "Connected",
        SessionSignal::Disconnected => "Disconnected",
        SessionSignal::LoggedOut => "LoggedOut",
        SessionSignal::Qr(_) => "QR",
        SessionSignal::QrTimeout => "QRTimeout",
    }
}

/// What to post for `user`, read under the users lock; `None` when it has no webhook for it.
pub(crate) fn prepare(user: &User, signal: SessionSignal) -> Option<(Hook, SessionSignal)> {
    user.hook_for(event_type(&signal))
        .map(|hook| (hook, signal))
}

/// Posts a prepared event in a background task (call outside the users lock).
pub(crate) fn spawn(sim: &Sim, prepared: Option<(Hook, SessionSignal)>) {
    let Some((hook, signal)) = prepared else {
        return;
    };
    let http = sim.receipts.http();
    let encoding = match sim.receipts.get().encoding {
        Encoding::Json => Encoding::Json,
        _ => Encoding::Form,
    };
    tokio::spawn(async move {
        let event = session_event(&signal);
        post_event(&http, &hook, encoding, &event, "session event").await;
    });
}
