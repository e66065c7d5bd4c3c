//! E.164 phone numbers.
//!
//! People type numbers in every form (`+62 812-3456-7890`, `0812…`, `62812…`); WhatsApp and our
//! storage want one form. [`Phone`] is that form — E.164 digits without the `+` — and it can only be
//! obtained through [`Phone::parse`] (user input, read with the tenant's default region) or
//! [`Phone::from_normalized`] (values we stored ourselves), so code that holds a `Phone` never
//! re-checks it. Parsing and validation are the `phonenumber` crate's (libphonenumber's metadata),
//! not hand-written rules (docs/decisions/0057).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use phonenumber::{country, Mode};

/// Longest input we hand to the parser. Real numbers, even generously formatted, fit easily; the
/// bound keeps hostile input (a CSV cell of megabytes) away from the parser.
const MAX_INPUT_LEN: usize = 64;

/// Shortest E.164 number in service: a 3-digit country code and a 4-digit subscriber number
/// (Niue, `+683 xxxx`). Anything libphonenumber calls valid is at least this long.
const MIN_DIGITS: usize = 7;

/// ITU-T E.164 caps a number, country code included, at 15 digits.
const MAX_DIGITS: usize = 15;

/// A valid phone number in E.164 form, stored as digits without the leading `+`
/// (`6281234567890`), which is how WhatsApp gateways address a chat and how the API returns phones.
///
/// Serde reads it with [`Phone::from_normalized`], because what we deserialize (events, rows,
/// queued jobs) was normalised when it entered the system and no default region is at hand there.
/// Request bodies carrying user-typed numbers must go through [`Phone::parse`] instead.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number is too long")]
    TooLong,
    #[error("not a valid phone number")]
    Invalid,
    #[error("unknown default region `{0}`")]
    UnknownRegion(String),
}

impl PhoneError {
    /// The reason a refused row or recipient is listed with (a campaign's `rejected`, an
    /// import's rejected rows).
    pub fn reason(&self) -> String {
        match self {
            PhoneError::Empty => "phone number is empty".into(),
            PhoneError::TooLong => "phone number is too long".into(),
            PhoneError::Invalid => "not a valid phone number".into(),
            PhoneError::UnknownRegion(r) => format!("the tenant's default region {r} is unknown"),
        }
    }
}

impl Phone {
    /// Reads a number as people write it and returns its E.164 form.
    ///
    /// Accepted: `+62 812-3456-7890`, `0812…` (national form, read in `default_region`, an ISO 3166
    /// alpha-2 code such as `"ID"`), `62812…` (international digits without `+`), `0062 812…`
    /// (the `00` international prefix), with spaces, tabs, dashes, dots and parentheses as
    /// separators (`(+62) 812…` too). Any other character makes the number [`PhoneError::Invalid`].
    ///
    /// Digits without `+` and without a leading `0` are first read as international (that is how
    /// phones arrive from spreadsheets and other systems, and how we return them, so that parsing
    /// is idempotent); only if that is not a valid number are they read as a national number of
    /// `default_region` (`6502530000` with `"US"`). A number valid both ways is taken as
    /// international: that is the only rule under which our own output always parses back to
    /// itself. The cost falls on regions whose numbers are written without a trunk `0`: in the US,
    /// `(201) 555-0123` is also Egypt's `+20 1555 0123` and reads as Egypt, so such tenants should
    /// write the `1` (`1 201 555 0123`) or `+1`. Regions that write national numbers with a leading
    /// `0` (Indonesia, most of Europe and Asia) are not affected.
    ///
    /// `default_region` is checked even when the input carries its country code: a tenant with a
    /// misconfigured region should hear about it on the first number, not on the first `0812…`.
    pub fn parse(input: &str, default_region: &str) -> Result<Phone, PhoneError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let input = input.trim();
        if input.is_empty() {
            return Err(PhoneError::Empty);
        }
        let region = region_id(default_region)?;
        let dialled = Dialled::read(input)?;

        let international = || read_number(None, &format!("+{}", dialled.digits));
        let national = || read_number(Some(region), &dialled.digits);
        if dialled.international {
            international()
        } else if dialled.digits.starts_with('0') {
            national()
        } else {
            international().or_else(|_| national())
        }
    }

    /// The E.164 digits, without `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a `Phone` from digits we normalised earlier (storage, events): 7 to 15 ASCII digits
    /// without a leading `0` (no country code starts with 0).
    ///
    /// This checks the shape only, not libphonenumber's metadata: a stored number must keep
    /// loading after a metadata update retires its range, and reading back millions of deliveries
    /// should not pay for a full parse.
    pub fn from_normalized(digits: &str) -> Result<Phone, PhoneError> {
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::Invalid);
        }
        if digits.len() > MAX_DIGITS {
            return Err(PhoneError::TooLong);
        }
        if digits.len() < MIN_DIGITS || digits.starts_with('0') {
            return Err(PhoneError::Invalid);
        }
        Ok(Phone(digits.to_owned()))
    }
}

/// Whether `code` names a region the parser knows (ISO 3166 alpha-2, any case, e.g. `"ID"`), so a
/// tenant's default region can be checked when it is set rather than when the first number fails.
pub fn is_valid_region(code: &str) -> bool {
    region_id(code).is_ok()
}

fn region_id(code: &str) -> Result<country::Id, PhoneError> {
    let unknown = || PhoneError::UnknownRegion(code.to_owned());
    let upper = code.trim().to_ascii_uppercase();
    if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(unknown());
    }
    // A region the enum names but the metadata lacks could never read a national number, so it
    // counts as unknown too.
    if phonenumber::metadata::DATABASE
        .by_id(upper.as_str())
        .is_none()
    {
        return Err(unknown());
    }
    upper.parse::<country::Id>().map_err(|_| unknown())
}

/// A number reduced to what was dialled: its digits, and whether they start with a country code.
struct Dialled {
    digits: String,
    international: bool,
}

impl Dialled {
    /// Keeps the digits and drops the separators. Only this canonical text reaches the
    /// `phonenumber` parser, which has panicked on odd punctuation before
    /// (whisperfish/rust-phonenumber#43, #32).
    fn read(input: &str) -> Result<Dialled, PhoneError> {
        let mut digits = String::with_capacity(input.len());
        let mut plus = false;
        for c in input.chars() {
            match c {
                '0'..='9' => digits.push(c),
                // A `+` only before the first digit, once: `+62…`, `(+62) …`.
                '+' if digits.is_empty() && !plus => plus = true,
                ' ' | '\t' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::Invalid),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Invalid);
        }
        if !plus {
            // `00` is the international prefix of most of the world (Indonesia included).
            if let Some(rest) = digits.strip_prefix("00") {
                return Ok(Dialled {
                    digits: rest.to_owned(),
                    international: true,
                });
            }
        }
        Ok(Dialled {
            digits,
            international: plus,
        })
    }
}

/// Parses canonical text (`+digits` or national digits), keeps it only if libphonenumber calls it
/// valid, and returns its E.164 digits.
///
/// The parser runs under `catch_unwind`: the character filter above removes the inputs known to
/// panic, and this turns any that remain into `Invalid` instead of a crashed import of 100,000
/// recipients.
fn read_number(region: Option<country::Id>, text: &str) -> Result<Phone, PhoneError> {
    let e164 = panic::catch_unwind(AssertUnwindSafe(|| {
        phonenumber::parse(region, text)
            .ok()
            .filter(phonenumber::is_valid)
            .map(|number| number.format().mode(Mode::E164).to_string())
    }))
    .ok()
    .flatten()
    .ok_or(PhoneError::Invalid)?;
    let digits = e164.strip_prefix('+').unwrap_or(&e164);
    Phone::from_normalized(digits).map_err(|_| PhoneError::Invalid)
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Phone {
    type Error = PhoneError;

    fn try_from(digits: String) -> Result<Phone, PhoneError> {
        Phone::from_normalized(&digits)
    }
}

impl From<Phone> for String {
    fn from(phone: Phone) -> String {
        phone.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_id(input: &str) -> Result<String, PhoneError> {
        Phone::parse(input, "ID").map(String::from)
    }

    #[test]
    fn indonesian_number_in_every_common_form() {
        for input in [
            "+62 812-3456-7890",
            "081234567890",
            "0812-3456-7890",
            "6281234567890",
            "0062 812 3456 7890",
            "(+62) 812.3456.7890",
            "  +6281234567890\t",
        ] {
            assert_eq!(parse_id(input).as_deref(), Ok("6281234567890"), "{input}");
        }
    }

    #[test]
    fn national_form_is_read_in_the_default_region() {
        let us = |input: &str| Phone::parse(input, "us").map(String::from);
        assert_eq!(us("(650) 253-0000").as_deref(), Ok("16502530000"));
        assert_eq!(us("1 (201) 555-0123").as_deref(), Ok("12015550123"));
        assert_eq!(us("+1 201 555 0123").as_deref(), Ok("12015550123"));
        let gb = Phone::parse("020 7946 0018", "GB").map(String::from);
        assert_eq!(gb.as_deref(), Ok("442079460018"));
    }

    /// Pins the trade-off documented on [`Phone::parse`]: `2015550123` is a valid Egyptian number
    /// (+20 1555 0123) as well as a US one written nationally; reading it as international keeps
    /// `parse` idempotent (it is also what we would return for the Egyptian number).
    #[test]
    fn digits_valid_as_international_are_read_as_international() {
        let phone = Phone::parse("(201) 555-0123", "US").map(String::from);
        assert_eq!(phone.as_deref(), Ok("2015550123"));
    }

    #[test]
    fn garbage_is_invalid() {
        for input in [
            "hello",
            "0812-CALL-ME",
            "12",
            "+",
            "--",
            "62812",
            "+62 812 34",
            "1;2;3",
        ] {
            assert_eq!(parse_id(input), Err(PhoneError::Invalid), "{input}");
        }
    }

    #[test]
    fn letters_are_invalid_even_around_a_valid_number() {
        assert_eq!(parse_id("tel:+6281234567890"), Err(PhoneError::Invalid));
        assert_eq!(parse_id("+6281234567890 ext 12"), Err(PhoneError::Invalid));
        assert_eq!(parse_id("+6281234567890x"), Err(PhoneError::Invalid));
    }

    #[test]
    fn a_second_plus_is_invalid() {
        assert_eq!(parse_id("+62 +812 3456 7890"), Err(PhoneError::Invalid));
        assert_eq!(parse_id("62+81234567890"), Err(PhoneError::Invalid));
    }

    #[test]
    fn empty_and_blank_are_empty() {
        assert_eq!(parse_id(""), Err(PhoneError::Empty));
        assert_eq!(parse_id("   "), Err(PhoneError::Empty));
    }

    #[test]
    fn overlong_input_is_refused_before_parsing() {
        let input = format!("+62 812 3456 7890{}", " ".repeat(60));
        assert_eq!(parse_id(&input), Err(PhoneError::TooLong));
        assert_eq!(parse_id(&"9".repeat(10_000)), Err(PhoneError::TooLong));
    }

    #[test]
    fn unknown_region_is_reported() {
        assert_eq!(
            Phone::parse("081234567890", "XX"),
            Err(PhoneError::UnknownRegion("XX".into()))
        );
        assert_eq!(
            Phone::parse("+6281234567890", "Indonesia"),
            Err(PhoneError::UnknownRegion("Indonesia".into()))
        );
        assert!(is_valid_region("ID"));
        assert!(is_valid_region("us"));
        assert!(!is_valid_region("ZZ"));
        assert!(!is_valid_region(""));
        assert!(!is_valid_region("001"));
    }

    #[test]
    fn from_normalized_checks_the_stored_shape() {
        assert_eq!(
            Phone::from_normalized("6281234567890").map(String::from),
            Ok("6281234567890".to_owned())
        );
        assert_eq!(Phone::from_normalized(""), Err(PhoneError::Empty));
        assert_eq!(
            Phone::from_normalized("1234567890123456"),
            Err(PhoneError::TooLong)
        );
        for bad in [
            "081234567890",
            "+6281234567890",
            "628123 4567",
            "123456",
            "６２８１２３４５６７",
        ] {
            assert_eq!(
                Phone::from_normalized(bad),
                Err(PhoneError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn shortest_valid_numbers_load_back_from_storage() {
        // Niue: 3-digit country code and 4-digit numbers.
        let phone = Phone::parse("+683 4002", "ID");
        assert_eq!(phone.as_ref().map(Phone::as_str), Ok("6834002"));
        if let Ok(phone) = phone {
            assert_eq!(Phone::from_normalized(phone.as_str()), Ok(phone));
        }
    }

    #[test]
    fn serde_uses_the_normalised_form() {
        let phone = Phone::parse("0812-3456-7890", "ID");
        let json = phone.as_ref().map(|p| serde_json::to_string(p).ok());
        assert_eq!(json, Ok(Some("\"6281234567890\"".to_owned())));
        let back: Result<Phone, _> = serde_json::from_str("\"6281234567890\"");
        assert_eq!(back.ok(), phone.ok());
        assert!(serde_json::from_str::<Phone>("\"0812-3456-7890\"").is_err());
        assert!(serde_json::from_str::<Phone>("\"\"").is_err());
    }

    #[test]
    fn display_is_the_digits() {
        let phone = Phone::parse("+62 812-3456-7890", "ID").map(|p| p.to_string());
        assert_eq!(phone.as_deref(), Ok("6281234567890"));
    }

    fn region() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "ID", "US", "GB", "DE", "IN", "BR", "NG", "JP", "IT", "NU",
        ])
    }

    /// Mostly plausible numbers (so that many parse and the idempotence property is exercised),
    /// some random digit strings, in international and national forms with separators.
    fn number_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "(\\+|00)?62 ?8[1-9][0-9]{1,2}[ -]?[0-9]{3,4}[ -]?[0-9]{3,4}",
            "08[1-9][0-9][ -]?[0-9]{3,4}[ -]?[0-9]{3,5}",
            "(\\+?1 ?)?\\(?[2-9][0-9]{2}\\)? ?[2-9][0-9]{2}-[0-9]{4}",
            "(\\+44 ?|0)7[1-9][0-9]{2} ?[0-9]{6}",
            "(\\+49 ?|0)1[5-7][0-9] ?[0-9]{7,8}",
            "(\\+91 ?|0)?[6-9][0-9]{4} ?[0-9]{5}",
            "\\+?[1-9][0-9 -]{6,16}",
            "0[1-9][0-9 -]{6,13}",
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(input in any::<String>(), region in region()) {
            let _ = Phone::parse(&input, region);
        }

        #[test]
        fn parse_never_panics_on_number_like_text(
            input in "[+0-9 ().x#:*-]{0,40}",
            region in region(),
        ) {
            let _ = Phone::parse(&input, region);
        }

        /// Whatever `parse` accepts, it accepts again unchanged from its own output, in any
        /// region, and `from_normalized` loads it back: what we store and return is a fixed point.
        #[test]
        fn parse_is_idempotent(
            input in number_like(),
            region in region(),
            other_region in region(),
        ) {
            if let Ok(phone) = Phone::parse(&input, region) {
                prop_assert_eq!(Phone::parse(phone.as_str(), region), Ok(phone.clone()));
                prop_assert_eq!(Phone::parse(phone.as_str(), other_region), Ok(phone.clone()));
                prop_assert_eq!(Phone::from_normalized(phone.as_str()), Ok(phone));
            }
        }
    }
}
