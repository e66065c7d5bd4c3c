//! Opt-outs (docs/safe-sending.md): where an opt-out came from, a tenant's stop and start keywords,
//! and the matcher that tells whether an incoming message is one of them.
//!
//! A keyword matches the WHOLE message: trimmed, compared without case or accents (Unicode NFKD
//! with the combining marks removed), with trailing punctuation and symbols dropped, so "STOP!",
//! "Stop." and "stóp" are `stop`, while "stop sending the brochure" is a sentence and matches
//! nothing. Work is bounded: a message longer than [`MAX_MATCH_BYTES`] is never a keyword and is
//! refused before any normalisation.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::DomainError;

/// Where an opt-out (or opt-in) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutSource {
    /// The contact wrote a stop (or start) keyword.
    Keyword,
    /// The Cloud API reported a marketing stop (`user_preferences`).
    CloudApi,
    /// Someone of the tenant said so (`POST /contacts/{phone}/opt-out`).
    Manual,
    /// An `opted_out` column of a contact import.
    Import,
}

impl OptOutSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            OptOutSource::Keyword => "keyword",
            OptOutSource::CloudApi => "cloud_api",
            OptOutSource::Manual => "manual",
            OptOutSource::Import => "import",
        }
    }

    pub fn parse(text: &str) -> Option<OptOutSource> {
        Some(match text {
            "keyword" => OptOutSource::Keyword,
            "cloud_api" => OptOutSource::CloudApi,
            "manual" => OptOutSource::Manual,
            "import" => OptOutSource::Import,
            _ => return None,
        })
    }
}

/// Longer messages are never keywords (the longest default is 11 characters); they are skipped
/// before any normalisation, so a hostile 64 KB message costs one length check.
pub const MAX_MATCH_BYTES: usize = 64;
/// Keywords per list.
pub const MAX_KEYWORDS: usize = 50;
/// Characters per keyword (after normalisation it must still fit [`MAX_MATCH_BYTES`]).
pub const MAX_KEYWORD_CHARS: usize = 32;
pub const MAX_CONFIRMATION_CHARS: usize = 1_000;

/// The defaults: English, Indonesian, Spanish and Portuguese.
pub const DEFAULT_STOP: [&str; 6] = ["stop", "unsubscribe", "berhenti", "baja", "parar", "sair"];
pub const DEFAULT_START: [&str; 2] = ["start", "mulai"];

/// What an incoming message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Stop,
    Start,
}

/// A message (or a keyword) as it is compared: `None` when it is too long to be a keyword or
/// nothing is left.
pub fn normalise(text: &str) -> Option<String> {
    // generous for the trimming and punctuation a real keyword message carries
    if text.len() > MAX_MATCH_BYTES * 4 {
        return None;
    }
    let trimmed = text.trim();
    if trimmed.len() > MAX_MATCH_BYTES * 2 {
        return None;
    }
    let mut out = String::with_capacity(trimmed.len());
    let mut space = false;
    for c in trimmed.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    let kept = out
        .trim_end_matches(|c: char| !c.is_alphanumeric())
        .trim_end();
    (!kept.is_empty() && kept.len() <= MAX_MATCH_BYTES).then(|| kept.to_string())
}

/// A tenant's keywords, ready to match (`GET|PUT /api/v1/settings/opt-out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutSettings {
    pub stop_keywords: Vec<String>,
    pub start_keywords: Vec<String>,
    /// To be sent once to a phone that has just opted out by keyword (not sent yet); `None`: none.
    pub confirmation_text: Option<String>,
}

impl Default for OptOutSettings {
    fn default() -> Self {
        OptOutSettings {
            stop_keywords: DEFAULT_STOP.iter().map(|s| s.to_string()).collect(),
            start_keywords: DEFAULT_START.iter().map(|s| s.to_string()).collect(),
            confirmation_text: None,
        }
    }
}

fn keyword_list(field: &str, given: &[String]) -> Result<Vec<String>, DomainError> {
    if given.len() > MAX_KEYWORDS {
        return Err(DomainError::invalid(
            field,
            &format!("at most {MAX_KEYWORDS} keywords"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for k in given {
        if k.trim().chars().count() > MAX_KEYWORD_CHARS {
            return Err(DomainError::invalid(
                field,
                &format!("a keyword is at most {MAX_KEYWORD_CHARS} characters"),
            ));
        }
        let Some(n) = normalise(k) else {
            return Err(DomainError::invalid(
                field,
                "a keyword must contain a letter or a digit",
            ));
        };
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

impl OptOutSettings {
    /// Validated and normalised as they are stored: keywords as the matcher compares them, a
    /// blank confirmation is none. A word cannot be both a stop and a start keyword.
    pub fn validated(self) -> Result<OptOutSettings, DomainError> {
        let stop = keyword_list("stop_keywords", &self.stop_keywords)?;
        let start = keyword_list("start_keywords", &self.start_keywords)?;
        if let Some(both) = stop.iter().find(|k| start.contains(k)) {
            return Err(DomainError::invalid(
                "start_keywords",
                &format!("`{both}` is also a stop keyword"),
            ));
        }
        let confirmation_text = match self.confirmation_text {
            Some(t) if t.chars().count() > MAX_CONFIRMATION_CHARS => {
                return Err(DomainError::invalid(
                    "confirmation_text",
                    &format!("must be at most {MAX_CONFIRMATION_CHARS} characters"),
                ))
            }
            Some(t) if t.contains('\0') => {
                return Err(DomainError::invalid(
                    "confirmation_text",
                    "must not contain NUL",
                ))
            }
            Some(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
            None => None,
        };
        Ok(OptOutSettings {
            stop_keywords: stop,
            start_keywords: start,
            confirmation_text,
        })
    }

    pub fn matcher(&self) -> Matcher {
        Matcher {
            stop: self
                .stop_keywords
                .iter()
                .filter_map(|k| normalise(k))
                .collect(),
            start: self
                .start_keywords
                .iter()
                .filter_map(|k| normalise(k))
                .collect(),
        }
    }
}

/// A tenant's keywords as sets of normalised words.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    stop: HashSet<String>,
    start: HashSet<String>,
}

impl Matcher {
    /// Whether this whole message is a stop or a start keyword.
    pub fn intent(&self, text: &str) -> Option<Intent> {
        let n = normalise(text)?;
        if self.stop.contains(&n) {
            Some(Intent::Stop)
        } else if self.start.contains(&n) {
            Some(Intent::Start)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> Matcher {
        OptOutSettings::default().matcher()
    }

    #[test]
    fn the_whole_message_trimmed_without_case_accents_or_trailing_punctuation_matches() {
        let m = defaults();
        for text in [
            "STOP",
            "  stop  ",
            "Stop!",
            "stop.",
            "stop!!! 🙏",
            "Stóp",
            "ＳＴＯＰ",
            "Berhenti",
            "unsubscribe?",
            "SAIR",
        ] {
            assert_eq!(m.intent(text), Some(Intent::Stop), "{text:?}");
        }
        assert_eq!(m.intent("Mulai"), Some(Intent::Start));
        assert_eq!(m.intent("start."), Some(Intent::Start));
        for text in [
            "stop sending the brochure",
            "please stop",
            "stopp",
            "¿stop",
            "",
            "   ",
            "!!!",
        ] {
            assert_eq!(m.intent(text), None, "{text:?}");
        }
    }

    #[test]
    fn settings_are_normalised_and_a_word_cannot_both_stop_and_start() {
        let s = OptOutSettings {
            stop_keywords: vec!["  Hentikan! ".into(), "hentikan".into(), "Bájá".into()],
            start_keywords: vec!["Ya".into()],
            confirmation_text: Some("  ".into()),
        }
        .validated()
        .expect("valid");
        assert_eq!(s.stop_keywords, vec!["hentikan", "baja"]);
        assert_eq!(s.confirmation_text, None);
        let both = OptOutSettings {
            stop_keywords: vec!["stop".into()],
            start_keywords: vec!["STOP".into()],
            confirmation_text: None,
        };
        assert!(matches!(
            both.validated(),
            Err(DomainError::Invalid { field, .. }) if field == "start_keywords"
        ));
        let empty = OptOutSettings {
            stop_keywords: vec!["?!".into()],
            ..OptOutSettings::default()
        };
        assert!(empty.validated().is_err());
        let long = OptOutSettings {
            stop_keywords: vec!["x".repeat(MAX_KEYWORD_CHARS + 1)],
            ..OptOutSettings::default()
        };
        assert!(long.validated().is_err());
    }

    #[test]
    fn a_hostile_message_is_refused_by_its_length_alone() {
        let m = defaults();
        let huge = format!("stop{}", " ".repeat(1_000_000));
        assert_eq!(m.intent(&huge), None);
        let marks = format!("s{}", "\u{301}".repeat(100_000));
        assert_eq!(normalise(&marks), None);
    }

    proptest! {
        // any casing, surrounding space and trailing punctuation of a keyword is that keyword
        #[test]
        fn decorated_keywords_match(
            word in prop::sample::select(DEFAULT_STOP.to_vec()),
            upper in prop::collection::vec(any::<bool>(), 11),
            lead in "[ \t\n]{0,3}",
            tail in "[ .!?,;]{0,4}",
        ) {
            let cased: String = word
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
                .collect();
            let text = format!("{lead}{cased}{tail}");
            prop_assert_eq!(defaults().intent(&text), Some(Intent::Stop));
        }

        // a keyword followed by more words is a sentence, not a keyword
        #[test]
        fn a_keyword_in_a_sentence_never_matches(
            word in prop::sample::select(DEFAULT_STOP.to_vec()),
            rest in "[a-z]{1,10}( [a-z]{1,10}){0,3}",
        ) {
            let text = format!("{word} {rest}");
            prop_assert_eq!(defaults().intent(&text), None);
        }

        // whatever arrives, matching is total, and what it normalises to is short
        #[test]
        fn any_text_is_matched_without_panicking(text in any::<String>()) {
            let _ = defaults().intent(&text);
            if let Some(n) = normalise(&text) {
                prop_assert!(n.len() <= MAX_MATCH_BYTES);
                prop_assert_eq!(normalise(&n), Some(n.clone()));
            }
        }
    }
}
