//! Session events posted to a user's webhook like WuzAPI does (`QR` after connecting an unpaired
//! user, `Connected` once paired, `LoggedOut`, `Disconnected`), in the receipt encoding, signed
//! with the user's HMAC key when it has one. Each post runs in its own task, so the request that
//! caused it is answered at once.

use std::time::Duration;

use crate::webhook::session::{session_event, SessionSignal};
use crate::webhook::{self, Encoding};

use super::receipts::Hook;
use super::state::Sim;
use super::users::User;

/// Attempts per post: a network error or a 5xx is tried again after 200 ms, then 400 ms.
const POST_ATTEMPTS: u32 = 3;

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
        let post = webhook::encode_post(
            &event,
            encoding,
            &hook.user_id,
            &hook.instance_name,
            hook.hmac_key.as_deref(),
        );
        for attempt in 0..POST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
            }
            let mut request = http
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, post.content_type)
                .body(post.body.clone());
            if let Some(signature) = &post.signature {
                request = request.header(webhook::SIGNATURE_HEADER, signature);
            }
            match request.send().await {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) if answer.status().is_client_error() => {
                    tracing::debug!(status = %answer.status(), "simulated session event refused");
                    return;
                }
                Ok(answer) => {
                    tracing::debug!(status = %answer.status(), "simulated session event failed")
                }
                Err(e) => {
                    tracing::debug!(error = %e.without_url(), "simulated session event not posted")
                }
            }
        }
    });
}
