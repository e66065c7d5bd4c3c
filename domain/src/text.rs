//! Text Postgres cannot store. A UTF-8 database refuses U+0000 (NUL) in `text` and in `jsonb`
//! (where `\u0000` is refused too); every other Unicode scalar value is stored as is. So one
//! character decides: what a tenant writes with a NUL is refused at the edge, naming the field,
//! and what a gateway sends us has its NULs removed (docs/decisions/0037).
//!
//! JSON can only carry a NUL as the escape `\u0000` (a raw control byte inside a string is a
//! syntax error), so [`may_hold_nul`] — one substring search — clears almost every body without
//! parsing it twice.

use serde_json::Value;

/// The one character Herald refuses (or removes).
pub const NUL: char = '\0';

/// Whether a JSON text might decode to a string or key holding U+0000. `false` is certain;
/// `true` may be `\\u0000` (an escaped backslash), which [`nul_path`] tells apart.
pub fn may_hold_nul(json: &[u8]) -> bool {
    memchr::memmem::find(json, br"\u0000").is_some()
}

/// The path of the first string or object key holding U+0000, in serde's notation
/// (`recipients[3].vars.name`); a key is named by the object it is in plus the key itself.
pub fn nul_path(value: &Value) -> Option<String> {
    let mut path = String::new();
    walk(value, &mut path).then_some(path)
}

fn walk(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(s) => s.contains(NUL),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = walk(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(key, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = key.contains(NUL) || walk(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `text` without its NULs (borrowed when it has none).
pub fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(NUL) {
        std::borrow::Cow::Owned(text.replace(NUL, ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Removes every NUL from the strings and keys of `value`, in place; the rest is kept.
pub fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) => {
            if s.contains(NUL) {
                s.retain(|c| c != NUL);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                let old = std::mem::take(map);
                for (key, item) in old {
                    // a key that only differs by NULs merges into the cleaned one: the last wins
                    map.insert(without_nul(&key).into_owned(), item);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Parses a JSON text as sent by a gateway, with its NULs removed (parsed once; cleaned only when
/// a NUL may be there).
pub fn parse_cleaned(json: &[u8]) -> serde_json::Result<Value> {
    let mut value: Value = serde_json::from_slice(json)?;
    if may_hold_nul(json) {
        strip_nul(&mut value);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_path_names_the_string_or_the_key() {
        let v =
            json!({"name": "ok", "recipients": [{"phone": "1"}, {"vars": {"name": "a\u{0}b"}}]});
        assert_eq!(nul_path(&v).as_deref(), Some("recipients[1].vars.name"));
        let v = json!({"fields": {"ci\u{0}ty": "x"}});
        assert_eq!(nul_path(&v).as_deref(), Some("fields.ci\u{0}ty"));
        let v = json!(["a", "b\u{0}"]);
        assert_eq!(nul_path(&v).as_deref(), Some("[1]"));
        assert_eq!(nul_path(&json!({"a": ["b", {"c": 1}]})), None);
    }

    #[test]
    fn the_search_finds_every_nul_and_an_escaped_backslash_is_not_one() {
        let text = br#"{"a": "x\u0000y"}"#;
        assert!(may_hold_nul(text));
        let escaped = br#"{"a": "x\\u0000y"}"#;
        assert!(may_hold_nul(escaped));
        let v: Value = serde_json::from_slice(escaped).unwrap();
        assert_eq!(
            nul_path(&v),
            None,
            "a backslash then u0000 is text, not NUL"
        );
        // a raw NUL inside a JSON string is not JSON at all
        assert!(serde_json::from_slice::<Value>(b"{\"a\": \"x\0y\"}").is_err());
        // lone surrogates cannot arrive through serde_json
        assert!(serde_json::from_slice::<Value>(br#"{"a": "\ud800"}"#).is_err());
        assert!(serde_json::from_slice::<Value>(br#"{"a": "\udc00x"}"#).is_err());
    }

    #[test]
    fn cleaning_removes_nuls_and_keeps_the_rest() {
        let text =
            br#"{"Info": {"PushName": "Bu\u0000di \u200f\ud83d\ude00"}, "k\u0000": [" \u0000 "]}"#;
        let v = parse_cleaned(text).unwrap();
        assert_eq!(v["Info"]["PushName"], "Budi \u{200f}😀");
        assert_eq!(v["k"][0], "  ");
        assert_eq!(nul_path(&v), None);
        assert_eq!(without_nul("a\0b"), "ab");
    }
}
