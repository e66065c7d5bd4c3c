//! `Contact`: one person a tenant can message, keyed by tenant + phone (docs/decisions/0051).
//!
//! A contact is either a phone contact (E.164 digits) or a *lid* contact: WhatsApp's privacy id
//! (`1203...@lid`) that has no phone number. Lid contacts come only from a gateway's contact list;
//! they are kept so the list matches the phone, but nothing can be sent to them by phone.
//! The stream id is `<tenant_id>:<key>`, so one tenant can never address another's contact.
//!
//! Each change is its own small event carrying the new value (the full tag set, the full field
//! map), so a projector sets rather than diffs, and a command that changes nothing appends nothing
//! (a second identical contact sync writes no events).
//!
//! Opting out and back in are events of the contact too ([`consent`], docs/safe-sending.md); an
//! opt-out outlives the contact: deleted and created again, it is still opted out.

mod consent;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::opt_out::OptOutSource;
use crate::phone::Phone;
use crate::DomainError;

/// A contact's extra columns (`city`, `company`...): template variables for audience campaigns.
pub type Fields = serde_json::Map<String, Value>;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_FIELDS: usize = 50;
pub const MAX_FIELD_KEY_CHARS: usize = 64;
pub const MAX_FIELD_VALUE_CHARS: usize = 1_000;
/// Longest lid user part we accept (real ones are ~15 digits).
const MAX_LID_DIGITS: usize = 32;

/// What a contact is keyed by within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactKey {
    Phone(Phone),
    /// `<digits>@lid`, as the gateway gave it (device suffix stripped).
    Lid(String),
}

impl ContactKey {
    /// The key as stored and shown: phone digits, or `<digits>@lid`.
    pub fn as_str(&self) -> &str {
        match self {
            ContactKey::Phone(p) => p.as_str(),
            ContactKey::Lid(l) => l,
        }
    }

    /// A lid JID (`1203...@lid`, optionally with a `:device` suffix); `None` if it is not one.
    pub fn lid(jid: &str) -> Option<ContactKey> {
        let user = jid.trim().strip_suffix("@lid")?;
        let user = user.split_once(':').map_or(user, |(u, _)| u);
        (!user.is_empty()
            && user.len() <= MAX_LID_DIGITS
            && user.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ContactKey::Lid(format!("{user}@lid")))
    }

    /// A key we stored ourselves.
    pub fn from_stored(key: &str) -> Option<ContactKey> {
        if key.ends_with("@lid") {
            ContactKey::lid(key)
        } else {
            Phone::from_normalized(key).ok().map(ContactKey::Phone)
        }
    }

    pub fn phone(&self) -> Option<&Phone> {
        match self {
            ContactKey::Phone(p) => Some(p),
            ContactKey::Lid(_) => None,
        }
    }
}

/// The event-store id of a tenant's contact.
pub fn contact_id(tenant_id: Uuid, key: &ContactKey) -> String {
    format!("{tenant_id}:{}", key.as_str())
}

/// Where a contact's data came from. A name set by a person (API or import) is never overwritten
/// by a contact sync; a name that came from a sync follows the phone's contact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContactSource {
    #[default]
    Api,
    Import,
    Sync,
    /// Created because the phone wrote to a linked number (an opt-out by keyword).
    Inbox,
}

impl ContactSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContactSource::Api => "api",
            ContactSource::Import => "import",
            ContactSource::Sync => "sync",
            ContactSource::Inbox => "inbox",
        }
    }
}

/// How an upsert's tags combine with the contact's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMode {
    /// The given tags become the contact's tags (`POST /contacts`).
    Replace,
    /// The given tags are added to the contact's (a CSV import never removes a tag).
    Add,
}

/// Create the contact, or merge into it. `None` leaves that part as it is; fields merge key by key.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub tenant_id: Uuid,
    pub key: ContactKey,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub tag_mode: TagMode,
    pub fields: Option<Fields>,
    pub source: ContactSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum ContactCommand {
    Upsert(Upsert),
    /// `PATCH`: `name: Some(None)` clears the name; `tags` replaces the set.
    Patch {
        tenant_id: Uuid,
        name: Option<Option<String>>,
        tags: Option<Vec<String>>,
        favorite: Option<bool>,
        at: DateTime<Utc>,
    },
    Delete {
        tenant_id: Uuid,
        at: DateTime<Utc>,
    },
    /// No more campaigns to this phone; creates the contact when there is none.
    OptOut {
        tenant_id: Uuid,
        key: ContactKey,
        source: OptOutSource,
        at: DateTime<Utc>,
    },
    /// Campaigns may reach this phone again.
    OptIn {
        tenant_id: Uuid,
        source: OptOutSource,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ContactEvent {
    ContactCreated {
        tenant_id: Uuid,
        /// Phone digits or `<digits>@lid`.
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        fields: Fields,
        source: ContactSource,
        at: DateTime<Utc>,
    },
    ContactRenamed {
        name: Option<String>,
        source: ContactSource,
        at: DateTime<Utc>,
    },
    /// The whole new tag set.
    ContactTagged {
        tags: Vec<String>,
        at: DateTime<Utc>,
    },
    /// The whole new field map.
    ContactFieldsChanged {
        fields: Fields,
        at: DateTime<Utc>,
    },
    ContactFavorited {
        favorite: bool,
        at: DateTime<Utc>,
    },
    ContactDeleted {
        at: DateTime<Utc>,
    },
    ContactOptedOut {
        source: OptOutSource,
        at: DateTime<Utc>,
    },
    ContactOptedIn {
        source: OptOutSource,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ContactEvent {
    fn event_type(&self) -> String {
        match self {
            ContactEvent::ContactCreated { .. } => "ContactCreated",
            ContactEvent::ContactRenamed { .. } => "ContactRenamed",
            ContactEvent::ContactTagged { .. } => "ContactTagged",
            ContactEvent::ContactFieldsChanged { .. } => "ContactFieldsChanged",
            ContactEvent::ContactFavorited { .. } => "ContactFavorited",
            ContactEvent::ContactDeleted { .. } => "ContactDeleted",
            ContactEvent::ContactOptedOut { .. } => "ContactOptedOut",
            ContactEvent::ContactOptedIn { .. } => "ContactOptedIn",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    pub tenant_id: Option<Uuid>,
    /// Created and not deleted since.
    pub exists: bool,
    pub name: Option<String>,
    pub name_source: ContactSource,
    pub tags: Vec<String>,
    pub fields: Fields,
    pub favorite: bool,
    /// Since when and how it opted out; kept through a delete (see the module doc).
    #[serde(default)]
    pub opted_out: Option<(OptOutSource, DateTime<Utc>)>,
}

impl Contact {
    pub fn visible_to(&self, tenant_id: Uuid) -> bool {
        self.exists && self.tenant_id == Some(tenant_id)
    }
}

/// A trimmed name; blank is no name.
pub fn validate_contact_name(name: &str) -> Result<Option<String>, DomainError> {
    let trimmed = name.trim();
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            "name",
            &format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
}

/// Tags are case-insensitive labels: trimmed, lowercased, de-duplicated and sorted.
pub fn normalise_tags(tags: &[String]) -> Result<Vec<String>, DomainError> {
    let mut set = BTreeSet::new();
    for tag in tags {
        let tag = normalise_tag(tag)?;
        set.insert(tag);
    }
    if set.len() > MAX_TAGS {
        return Err(DomainError::invalid(
            "tags",
            &format!("a contact has at most {MAX_TAGS} tags"),
        ));
    }
    Ok(set.into_iter().collect())
}

/// One tag as stored (and as `?tag=` and `audience.tag` are read).
pub fn normalise_tag(tag: &str) -> Result<String, DomainError> {
    let tag = tag.trim().to_lowercase();
    if tag.is_empty() {
        return Err(DomainError::invalid("tags", "a tag must not be empty"));
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(DomainError::invalid(
            "tags",
            &format!("a tag is at most {MAX_TAG_CHARS} characters"),
        ));
    }
    if tag.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "tags",
            "a tag must not contain control characters",
        ));
    }
    Ok(tag)
}

/// Whether `key` can be a field: it is a template variable, so `[a-z_][a-z0-9_]*`; `name` and
/// `phone` are the contact's own.
pub fn is_field_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && key.len() <= MAX_FIELD_KEY_CHARS
        && key != "name"
        && key != "phone"
}

/// A spreadsheet header as a field key: `"First Name"` → `first_name`. `None` when nothing is left.
pub fn field_key_from_header(header: &str) -> Option<String> {
    let mut key = String::new();
    for c in header.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            key.push(c);
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    let key = key.trim_end_matches('_').to_string();
    let key = if key.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{key}")
    } else {
        key
    };
    (!key.is_empty() && key.len() <= MAX_FIELD_KEY_CHARS).then_some(key)
}

/// Field values are strings, numbers or booleans (they end up in message text).
pub fn validate_fields(fields: &Fields) -> Result<(), DomainError> {
    if fields.len() > MAX_FIELDS {
        return Err(DomainError::invalid(
            "fields",
            &format!("a contact has at most {MAX_FIELDS} fields"),
        ));
    }
    for (key, value) in fields {
        if !is_field_key(key) {
            return Err(DomainError::invalid(
                &format!("fields.{key}"),
                "a field name is lowercase letters, digits and `_` (not `name` or `phone`)",
            ));
        }
        match value {
            Value::String(s) if s.chars().count() > MAX_FIELD_VALUE_CHARS => {
                return Err(DomainError::invalid(
                    &format!("fields.{key}"),
                    &format!("is longer than {MAX_FIELD_VALUE_CHARS} characters"),
                ))
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(DomainError::invalid(
                    &format!("fields.{key}"),
                    "must be a string, a number or a boolean",
                ))
            }
        }
    }
    Ok(())
}

impl Aggregate for Contact {
    const TYPE: &'static str = "Contact";
    type Command = ContactCommand;
    type Event = ContactEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ContactCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ContactCommand::Upsert(u) => {
                if self.tenant_id.is_some_and(|t| t != u.tenant_id) {
                    return Err(DomainError::NotFound);
                }
                let name = match &u.name {
                    Some(n) => validate_contact_name(n)?,
                    None => None,
                };
                let tags = u.tags.as_deref().map(normalise_tags).transpose()?;
                if let Some(fields) = &u.fields {
                    validate_fields(fields)?;
                }
                if !self.exists {
                    let opted_out = self.opted_out;
                    let event = ContactEvent::ContactCreated {
                        tenant_id: u.tenant_id,
                        key: u.key.as_str().to_string(),
                        name,
                        tags: tags.unwrap_or_default(),
                        fields: u.fields.unwrap_or_default(),
                        source: u.source,
                        at: u.at,
                    };
                    sink.write(event, self).await;
                    // a contact that comes back is still opted out, and its read model says so
                    if let Some((source, at)) = opted_out {
                        sink.write(ContactEvent::ContactOptedOut { source, at }, self)
                            .await;
                    }
                    return Ok(());
                }
                // a person's name is not replaced by the phone's contact list
                let may_rename = u.source != ContactSource::Sync
                    || self.name.is_none()
                    || self.name_source == ContactSource::Sync;
                if let Some(name) = name.filter(|n| may_rename && self.name.as_ref() != Some(n)) {
                    let event = ContactEvent::ContactRenamed {
                        name: Some(name),
                        source: u.source,
                        at: u.at,
                    };
                    sink.write(event, self).await;
                }
                if let Some(tags) = tags {
                    let tags = match u.tag_mode {
                        TagMode::Replace => tags,
                        TagMode::Add => {
                            let all: Vec<String> = self.tags.iter().cloned().chain(tags).collect();
                            normalise_tags(&all)?
                        }
                    };
                    if tags != self.tags {
                        sink.write(ContactEvent::ContactTagged { tags, at: u.at }, self)
                            .await;
                    }
                }
                if let Some(given) = u.fields {
                    let mut fields = self.fields.clone();
                    fields.extend(given);
                    validate_fields(&fields)?;
                    if fields != self.fields {
                        sink.write(
                            ContactEvent::ContactFieldsChanged { fields, at: u.at },
                            self,
                        )
                        .await;
                    }
                }
            }
            ContactCommand::Patch {
                tenant_id,
                name,
                tags,
                favorite,
                at,
            } => {
                if !self.visible_to(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                let name = match name {
                    Some(Some(n)) => Some(validate_contact_name(&n)?),
                    Some(None) => Some(None),
                    None => None,
                };
                let tags = tags.as_deref().map(normalise_tags).transpose()?;
                if let Some(name) = name.filter(|n| *n != self.name) {
                    let event = ContactEvent::ContactRenamed {
                        name,
                        source: ContactSource::Api,
                        at,
                    };
                    sink.write(event, self).await;
                }
                if let Some(tags) = tags.filter(|t| *t != self.tags) {
                    sink.write(ContactEvent::ContactTagged { tags, at }, self)
                        .await;
                }
                if let Some(favorite) = favorite.filter(|f| *f != self.favorite) {
                    sink.write(ContactEvent::ContactFavorited { favorite, at }, self)
                        .await;
                }
            }
            ContactCommand::Delete { tenant_id, at } => {
                if !self.visible_to(tenant_id) {
                    return Err(DomainError::NotFound);
                }
                sink.write(ContactEvent::ContactDeleted { at }, self).await;
            }
            ContactCommand::OptOut {
                tenant_id,
                key,
                source,
                at,
            } => self.opt_out(tenant_id, key, source, at, sink).await?,
            ContactCommand::OptIn {
                tenant_id,
                source,
                at,
            } => self.opt_in(tenant_id, source, at, sink).await?,
        }
        Ok(())
    }

    fn apply(&mut self, event: ContactEvent) {
        match event {
            ContactEvent::ContactCreated {
                tenant_id,
                name,
                tags,
                fields,
                source,
                ..
            } => {
                *self = Contact {
                    tenant_id: Some(tenant_id),
                    exists: true,
                    name,
                    name_source: source,
                    tags,
                    fields,
                    favorite: false,
                    opted_out: self.opted_out,
                };
            }
            ContactEvent::ContactRenamed { name, source, .. } => {
                self.name = name;
                self.name_source = source;
            }
            ContactEvent::ContactTagged { tags, .. } => self.tags = tags,
            ContactEvent::ContactFieldsChanged { fields, .. } => self.fields = fields,
            ContactEvent::ContactFavorited { favorite, .. } => self.favorite = favorite,
            ContactEvent::ContactDeleted { .. } => self.exists = false,
            ContactEvent::ContactOptedOut { source, at } => self.opted_out = Some((source, at)),
            ContactEvent::ContactOptedIn { .. } => self.opted_out = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    type ContactTest = TestFramework<Contact>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
    }

    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }

    fn key() -> ContactKey {
        ContactKey::Phone(Phone::from_normalized("6281234567890").expect("digits"))
    }

    fn upsert(name: Option<&str>, source: ContactSource) -> ContactCommand {
        ContactCommand::Upsert(Upsert {
            tenant_id: owner(),
            key: key(),
            name: name.map(String::from),
            tags: None,
            tag_mode: TagMode::Replace,
            fields: None,
            source,
            at: at(),
        })
    }

    fn created(name: Option<&str>, source: ContactSource) -> ContactEvent {
        ContactEvent::ContactCreated {
            tenant_id: owner(),
            key: "6281234567890".into(),
            name: name.map(String::from),
            tags: vec![],
            fields: Fields::new(),
            source,
            at: at(),
        }
    }

    #[test]
    fn a_new_contact_is_created_with_a_trimmed_name() {
        ContactTest::with(())
            .given_no_previous_events()
            .when(upsert(Some("  Sari "), ContactSource::Api))
            .then_expect_events(vec![created(Some("Sari"), ContactSource::Api)]);
    }

    #[test]
    fn the_same_upsert_twice_appends_nothing() {
        ContactTest::with(())
            .given(vec![created(Some("Sari"), ContactSource::Sync)])
            .when(upsert(Some("Sari"), ContactSource::Sync))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_sync_never_renames_a_contact_a_person_named() {
        ContactTest::with(())
            .given(vec![created(Some("Mum"), ContactSource::Api)])
            .when(upsert(Some("Sari Rahma"), ContactSource::Sync))
            .then_expect_events(vec![]);
        ContactTest::with(())
            .given(vec![created(Some("Sari"), ContactSource::Sync)])
            .when(upsert(Some("Sari Rahma"), ContactSource::Sync))
            .then_expect_events(vec![ContactEvent::ContactRenamed {
                name: Some("Sari Rahma".into()),
                source: ContactSource::Sync,
                at: at(),
            }]);
    }

    #[test]
    fn an_import_adds_tags_and_merges_fields() {
        let given = ContactEvent::ContactCreated {
            tenant_id: owner(),
            key: "6281234567890".into(),
            name: None,
            tags: vec!["vip".into()],
            fields: json!({"city": "Bandung", "tier": "gold"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            source: ContactSource::Api,
            at: at(),
        };
        ContactTest::with(())
            .given(vec![given])
            .when(ContactCommand::Upsert(Upsert {
                tenant_id: owner(),
                key: key(),
                name: None,
                tags: Some(vec!["Lead ".into(), "vip".into()]),
                tag_mode: TagMode::Add,
                fields: json!({"city": "Jakarta"}).as_object().cloned(),
                source: ContactSource::Import,
                at: at(),
            }))
            .then_expect_events(vec![
                ContactEvent::ContactTagged {
                    tags: vec!["lead".into(), "vip".into()],
                    at: at(),
                },
                ContactEvent::ContactFieldsChanged {
                    fields: json!({"city": "Jakarta", "tier": "gold"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    at: at(),
                },
            ]);
    }

    #[test]
    fn patch_and_delete_need_a_live_contact_of_the_tenant() {
        let patch = |tenant_id| ContactCommand::Patch {
            tenant_id,
            name: Some(None),
            tags: None,
            favorite: Some(true),
            at: at(),
        };
        ContactTest::with(())
            .given_no_previous_events()
            .when(patch(owner()))
            .then_expect_error(DomainError::NotFound);
        ContactTest::with(())
            .given(vec![created(Some("Sari"), ContactSource::Api)])
            .when(patch(Uuid::from_u128(2)))
            .then_expect_error(DomainError::NotFound);
        ContactTest::with(())
            .given(vec![created(Some("Sari"), ContactSource::Api)])
            .when(patch(owner()))
            .then_expect_events(vec![
                ContactEvent::ContactRenamed {
                    name: None,
                    source: ContactSource::Api,
                    at: at(),
                },
                ContactEvent::ContactFavorited {
                    favorite: true,
                    at: at(),
                },
            ]);
        ContactTest::with(())
            .given(vec![
                created(None, ContactSource::Api),
                ContactEvent::ContactDeleted { at: at() },
            ])
            .when(ContactCommand::Delete {
                tenant_id: owner(),
                at: at(),
            })
            .then_expect_error(DomainError::NotFound);
    }

    #[test]
    fn a_deleted_contact_comes_back_fresh() {
        ContactTest::with(())
            .given(vec![
                created(Some("Old"), ContactSource::Api),
                ContactEvent::ContactFavorited {
                    favorite: true,
                    at: at(),
                },
                ContactEvent::ContactDeleted { at: at() },
            ])
            .when(upsert(None, ContactSource::Api))
            .then_expect_events(vec![created(None, ContactSource::Api)]);
    }

    #[test]
    fn bad_tags_and_fields_are_refused_with_the_field_named() {
        assert!(normalise_tags(&["".into()]).is_err());
        assert!(normalise_tags(&["x".repeat(65)]).is_err());
        let bad = json!({"First Name": "x"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            validate_fields(&bad),
            Err(DomainError::invalid(
                "fields.First Name",
                "a field name is lowercase letters, digits and `_` (not `name` or `phone`)"
            ))
        );
        let nested = json!({"a": {"b": 1}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(validate_fields(&nested).is_err());
    }

    #[test]
    fn headers_become_field_keys_and_lids_are_recognised() {
        assert_eq!(
            field_key_from_header(" First Name "),
            Some("first_name".into())
        );
        assert_eq!(field_key_from_header("E-mail"), Some("e_mail".into()));
        assert_eq!(field_key_from_header("2nd city"), Some("_2nd_city".into()));
        assert_eq!(field_key_from_header("---"), None);
        assert_eq!(
            ContactKey::lid("120363025246125888:3@lid"),
            Some(ContactKey::Lid("120363025246125888@lid".into()))
        );
        assert_eq!(ContactKey::lid("abc@lid"), None);
        assert_eq!(ContactKey::lid("6281@s.whatsapp.net"), None);
        assert_eq!(
            ContactKey::from_stored("120363025246125888@lid").map(|k| k.as_str().to_string()),
            Some("120363025246125888@lid".into())
        );
    }
}
