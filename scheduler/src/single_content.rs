//! What a single send carries on its queue row (`dispatch_queue.content`): written by
//! herald-messages when a send is accepted, read by the dispatcher when it sends. It is the
//! queue's format, so it lives with the queue (docs/decisions/0067).

use herald_gateway::MessageContent;
use serde::{Deserialize, Serialize};

/// What a single send carries, as stored on its queue row (`dispatch_queue.content`, tagged by
/// `type`; rows written before image sends existed read unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SingleContent {
    Text {
        body: String,
    },
    /// An image stored in `media` (processed when the send was accepted, decision 0023) and its
    /// caption, plain text sent as given.
    Image {
        /// The SHA-256 of the stored JPEG.
        media: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// Anything this version cannot read (written by a newer one); fails the send with a reason.
    #[serde(other)]
    Unreadable,
}

impl SingleContent {
    pub fn kind(&self) -> &'static str {
        match self {
            SingleContent::Text { .. } => "text",
            SingleContent::Image { .. } => "image",
            SingleContent::Unreadable => "unknown",
        }
    }

    /// The text its chat line shows (an image's caption; the type is [`SingleContent::kind`]).
    pub fn chat_text(&self) -> Option<String> {
        match self {
            SingleContent::Text { body } => Some(body.clone()),
            SingleContent::Image { caption, .. } => caption.clone(),
            SingleContent::Unreadable => None,
        }
    }

    /// The stored image this message sends, if it is an image.
    pub fn image(&self) -> Option<&str> {
        match self {
            SingleContent::Image { media, .. } => Some(media),
            _ => None,
        }
    }

    /// The gateway's message; `data_url` is the image's `data:image/jpeg;base64,...` (the
    /// dispatcher loads it from [`SingleContent::image`]'s hash).
    pub fn to_gateway(&self, data_url: Option<&str>) -> MessageContent {
        match (self, data_url) {
            (SingleContent::Text { body }, _) => MessageContent::Text { body: body.clone() },
            (SingleContent::Image { caption, .. }, Some(url)) => MessageContent::Image {
                data_url: url.to_string(),
                caption: caption.clone().filter(|c| !c.trim().is_empty()),
            },
            // an empty text: the gateway refuses it and the recipient fails with its reason
            (SingleContent::Image { .. }, None) | (SingleContent::Unreadable, _) => {
                MessageContent::Text {
                    body: String::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_rows_of_every_version_read() {
        // a text row as written before image sends existed
        let old: SingleContent =
            serde_json::from_str(r#"{"type": "text", "body": "Your code is 4411"}"#).expect("text");
        assert_eq!(
            old,
            SingleContent::Text {
                body: "Your code is 4411".into()
            }
        );
        let image = SingleContent::Image {
            media: "ab".repeat(32),
            caption: Some("Hi".into()),
        };
        let json = serde_json::to_value(&image).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"type": "image", "media": "ab".repeat(32), "caption": "Hi"})
        );
        assert_eq!(
            serde_json::from_value::<SingleContent>(json).expect("reads back"),
            image
        );
        let bare: SingleContent =
            serde_json::from_str(r#"{"type": "image", "media": "cd"}"#).expect("no caption");
        assert_eq!(bare.image(), Some("cd"));
        let future: SingleContent =
            serde_json::from_str(r#"{"type": "video", "media": "x"}"#).expect("unknown type");
        assert_eq!(future, SingleContent::Unreadable);
    }

    #[test]
    fn an_image_goes_to_the_gateway_with_its_caption() {
        let image = SingleContent::Image {
            media: "ab".into(),
            caption: Some("Hello".into()),
        };
        match image.to_gateway(Some("data:image/jpeg;base64,AAAA")) {
            MessageContent::Image { data_url, caption } => {
                assert_eq!(data_url, "data:image/jpeg;base64,AAAA");
                assert_eq!(caption.as_deref(), Some("Hello"));
            }
            other => panic!("not an image: {other:?}"),
        }
        let blank = SingleContent::Image {
            media: "ab".into(),
            caption: Some("  ".into()),
        };
        assert!(matches!(
            blank.to_gateway(Some("data:image/jpeg;base64,AAAA")),
            MessageContent::Image { caption: None, .. }
        ));
    }
}
