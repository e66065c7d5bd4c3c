//! The Cloud API's `user_preferences` change: a user telling WhatsApp to stop (or resume)
//! marketing messages from a business, e.g.
//! `{"field": "user_preferences", "value": {"messaging_product": "whatsapp", "metadata": {...},
//! "user_preferences": [{"wa_id": "6281...", "detail": "User requested to stop marketing
//! messages", "category": "marketing_messages", "value": "stop", "timestamp": 1731705721}]}}`.
//! Herald counts a marketing `stop` as an opt-out and `resume` as an opt-in; other categories
//! are not about campaigns and are ignored.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The field of the change.
pub const FIELD: &str = "user_preferences";

/// One user's marketing preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketingPreference {
    /// The user's WhatsApp id: phone digits.
    pub wa_id: String,
    /// `true`: stop marketing messages; `false`: resume them.
    pub stop: bool,
    pub timestamp: Option<DateTime<Utc>>,
}

/// The marketing preferences of a stored `user_preferences` change (`{"field", "value"}`);
/// entries that are not a readable marketing stop or resume are left out.
pub fn parse_marketing_preferences(change: &Value) -> Vec<MarketingPreference> {
    let Some(entries) = change
        .pointer("/value/user_preferences")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    entries
        .iter()
        .filter(|e| e.get("category").and_then(Value::as_str) == Some("marketing_messages"))
        .filter_map(|e| {
            let wa_id = e
                .get("wa_id")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|w| {
                    !w.is_empty() && w.len() <= 32 && w.bytes().all(|b| b.is_ascii_digit())
                })?;
            let stop = match e.get("value").and_then(Value::as_str) {
                Some("stop") => true,
                Some("resume") => false,
                _ => return None,
            };
            Some(MarketingPreference {
                wa_id: wa_id.to_string(),
                stop,
                timestamp: super::unix_time(e.get("timestamp")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_marketing_stop_and_resume_are_read_and_other_entries_left_out() {
        let change = json!({"field": "user_preferences", "value": {
        "messaging_product": "whatsapp",
        "user_preferences": [
            {"wa_id": "6281234567890", "category": "marketing_messages", "value": "stop",
             "detail": "User requested to stop marketing messages", "timestamp": 1731705721},
            {"wa_id": "6281234567891", "category": "marketing_messages", "value": "resume",
             "timestamp": "1731705722"},
            {"wa_id": "6281234567892", "category": "something_else", "value": "stop"},
            {"wa_id": "not digits", "category": "marketing_messages", "value": "stop"},
            {"category": "marketing_messages", "value": "stop"}
        ]}});
        let prefs = parse_marketing_preferences(&change);
        assert_eq!(prefs.len(), 2);
        assert_eq!(prefs[0].wa_id, "6281234567890");
        assert!(prefs[0].stop);
        assert_eq!(prefs[0].timestamp.map(|t| t.timestamp()), Some(1731705721));
        assert!(!prefs[1].stop);
        assert_eq!(parse_marketing_preferences(&json!({"value": 3})), vec![]);
    }
}
