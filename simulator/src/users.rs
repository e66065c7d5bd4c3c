//! Simulated WuzAPI users (one per linked number), keyed by user token.
//!
//! Two ways in, on purpose: a token the simulator has never seen becomes a user that is already
//! connected and paired, so benchmarks and tests can send with any token at once; a user created
//! through `POST /admin/users` starts disconnected and unpaired, like on a real WuzAPI, so the
//! onboarding flow (connect, QR, status) can be exercised.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::lock::lock;
use super::receipts::Hook;

/// One simulated user.
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) name: String,
    /// Shared with every ledger record of this user, so recording a send does not copy it.
    pub(crate) token: Arc<str>,
    pub(crate) connected: bool,
    pub(crate) logged_in: bool,
    /// The paired number's JID, made up from the token so it is stable across runs.
    pub(crate) jid: String,
    pub(crate) webhook: String,
    pub(crate) events: Vec<String>,
    /// Set through `/session/hmac/config`; receipts posted to `webhook` are signed with it.
    pub(crate) hmac_key: Option<String>,
    /// What `/user/contacts` answers as `data`, set through `PUT /sim/users/{token}/contacts`
    /// (any JSON, so tests can make it hostile); `None`: a small deterministic list.
    pub(crate) contacts: Option<serde_json::Value>,
}

impl User {
    fn new(id: String, name: String, token: &str, ready: bool) -> Self {
        Self {
            id,
            name,
            token: Arc::from(token),
            connected: ready,
            logged_in: ready,
            jid: fake_jid(token),
            webhook: String::new(),
            events: Vec::new(),
            hmac_key: None,
            contacts: None,
        }
    }

    /// Where this user's receipts go: its webhook, when it has one and subscribes to
    /// `ReadReceipt` (an empty subscription list means every event, as in the simulator's
    /// default users).
    pub(crate) fn receipt_hook(&self) -> Option<Hook> {
        self.hook_for("ReadReceipt")
    }

    /// Where this user's events of `event_type` go: its webhook, when it has one and subscribes
    /// to the type (or to `All`, or to nothing in particular).
    pub(crate) fn hook_for(&self, event_type: &str) -> Option<Hook> {
        let subscribed = self.events.is_empty()
            || self
                .events
                .iter()
                .any(|e| e.eq_ignore_ascii_case(event_type) || e.eq_ignore_ascii_case("All"));
        (!self.webhook.is_empty() && subscribed).then(|| Hook {
            url: self.webhook.clone(),
            hmac_key: self.hmac_key.clone(),
            user_id: self.id.clone(),
            instance_name: self.name.clone(),
        })
    }

    /// Sends need a connected, paired session; otherwise WuzAPI answers 500 `no session`.
    pub(crate) fn can_send(&self) -> bool {
        self.connected && self.logged_in
    }

    pub(crate) fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            name: self.name.clone(),
            token: self.token.to_string(),
            webhook: self.webhook.clone(),
            events: self.events.join(","),
            connected: self.connected,
            logged_in: self.logged_in,
            jid: if self.logged_in {
                self.jid.clone()
            } else {
                String::new()
            },
        }
    }
}

/// A user as `/admin/users` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UserView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) webhook: String,
    pub(crate) events: String,
    pub(crate) connected: bool,
    #[serde(rename = "loggedIn")]
    pub(crate) logged_in: bool,
    pub(crate) jid: String,
}

/// All users. One mutex: every operation is a hash lookup plus a few field writes.
#[derive(Default)]
pub(crate) struct Users {
    by_token: Mutex<HashMap<Arc<str>, User>>,
    last_id: AtomicU64,
}

impl Users {
    /// Runs `f` on the token's user, creating a ready-to-send one on first sight.
    pub(crate) fn with<R>(&self, token: &str, f: impl FnOnce(&mut User) -> R) -> R {
        let mut users = lock(&self.by_token);
        if let Some(user) = users.get_mut(token) {
            return f(user);
        }
        let user = User::new(self.next_id(), String::new(), token, true);
        f(users.entry(user.token.clone()).or_insert(user))
    }

    /// Runs `f` on the token's user if there is one; never creates a user.
    pub(crate) fn with_existing<R>(
        &self,
        token: &str,
        f: impl FnOnce(&mut User) -> R,
    ) -> Option<R> {
        lock(&self.by_token).get_mut(token).map(f)
    }

    /// Runs `f` on the user with this id, if there is one.
    pub(crate) fn with_id<R>(&self, id: &str, f: impl FnOnce(&mut User) -> R) -> Option<R> {
        lock(&self.by_token)
            .values_mut()
            .find(|user| user.id == id)
            .map(f)
    }

    /// Creates a user the way `POST /admin/users` does: not connected, not paired. `None` when
    /// the token is taken.
    pub(crate) fn create(
        &self,
        name: &str,
        token: &str,
        webhook: &str,
        events: Vec<String>,
    ) -> Option<UserView> {
        let mut users = lock(&self.by_token);
        if users.contains_key(token) {
            return None;
        }
        let mut user = User::new(self.next_id(), name.to_owned(), token, false);
        user.webhook = webhook.to_owned();
        user.events = events;
        let view = user.view();
        users.insert(user.token.clone(), user);
        Some(view)
    }

    /// Every user, ordered by id for a stable listing.
    pub(crate) fn list(&self) -> Vec<UserView> {
        let mut views: Vec<UserView> = lock(&self.by_token).values().map(User::view).collect();
        views.sort_by_key(|view| view.id.parse::<u64>().unwrap_or(u64::MAX));
        views
    }

    /// Removes the user with this id; whether it existed.
    pub(crate) fn delete(&self, id: &str) -> bool {
        let mut users = lock(&self.by_token);
        let before = users.len();
        users.retain(|_, user| user.id != id);
        users.len() != before
    }

    fn next_id(&self) -> String {
        (self.last_id.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }
}

/// An Indonesian-looking number derived from the token, so a given token always "pairs" with the
/// same JID.
fn fake_jid(token: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    format!("62811{:08}@s.whatsapp.net", hasher.finish() % 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tokens_become_ready_users_and_admin_users_start_unpaired() {
        let users = Users::default();
        assert!(users.with("lazy", |user| user.can_send()));
        let created = users
            .create("shop", "admin-made", "", vec!["Message".into()])
            .expect("token is free");
        assert!(!created.connected && !created.logged_in);
        assert!(!users.with("admin-made", |user| user.can_send()));
        assert!(users.create("again", "admin-made", "", vec![]).is_none());
        assert_eq!(users.list().len(), 2);
        assert!(users.delete(&created.id));
        assert!(!users.delete(&created.id));
        assert_eq!(users.with("x", |u| u.jid.clone()), fake_jid("x"));
    }
}
