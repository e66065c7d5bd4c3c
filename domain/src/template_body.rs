//! Message bodies with variables: `Hi {{ name }}, your code is {{ code }}`.
//!
//! A [`TemplateBody`] is source text in Herald's template language ([`crate::template_language`],
//! a bounded part of minijinja). It is checked once, when a tenant saves it
//! ([`TemplateBody::parse`]); text read back from our own events is trusted
//! ([`TemplateBody::stored`]) and never rehearsed again. Rendering goes through a
//! [`CompiledTemplate`], compiled once per body and kept in a small process-wide cache, so the
//! dispatch hot path (5,000+ renders/s) never re-parses.
//!
//! Decisions
//! - A variable the recipient lacks renders as empty text, as does one set to JSON `null`:
//!   one missing CSV column should not fail a whole send, and authors pick a fallback with
//!   `{{ name | default("there") }}`. Lookups through a missing value (`{{ address.city }}`) are
//!   empty too (minijinja's *chainable* undefined, the lenient one extended to attributes).
//! - `phone` is always the recipient's phone; `name` is the recipient's `name` variable when set,
//!   else the recipient's name; every other variable is passed as given.
//! - No autoescaping: the output is WhatsApp text, not HTML, so `&` must stay `&`.
//! - Authors are tenants, and a tenant's template runs on our dispatcher for every recipient, so
//!   the cost of a render is bounded whatever the body says (decision 0039): the language has no
//!   construct that multiplies sizes, a fuel limit bounds the instructions of one render (a
//!   nested `{% for %}` fails instead of hanging a worker), the recipient's variables are
//!   bounded ([`MAX_VARS_BYTES`]), and output beyond [`MAX_RENDERED_CHARS`] stops the render as
//!   soon as it is written.
//! - A body is rehearsed when it is saved: rendered once for a sample recipient without
//!   variables, so a body that runs out of fuel or output for everyone is refused then, not
//!   discovered by every recipient of a 100,000-message campaign. Failures that depend on a
//!   recipient's data are not the body's fault and do not refuse it.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use sha2::{Digest, Sha256};

use crate::template_error::syntax_error;
pub use crate::template_error::TemplateError;
use crate::template_language;

/// Longest body accepted, in characters; WhatsApp text messages are limited to 4,096.
pub const MAX_BODY_CHARS: usize = 4096;

/// Longest rendered message, in characters. Variables may legitimately make a body longer than its
/// source, but not this much: beyond it the render is an error rather than a giant message.
pub const MAX_RENDERED_CHARS: usize = MAX_BODY_CHARS * 4;

/// Largest set of variables one recipient may be rendered with (strings, keys and numbers, about
/// as JSON would count them). Every instruction of a render may walk a recipient's data once
/// (`x in items`, `text | upper`), so this times the fuel bounds a render's work; 50 contact
/// fields of 1,000 plain characters fit. A recipient over it fails with that reason.
pub const MAX_VARS_BYTES: usize = 64 * 1024;

/// Instructions one render may execute. A body of 4,096 characters with variables, conditions and
/// a loop over a recipient's list runs a few thousand; a runaway loop stops within milliseconds.
pub const FUEL_PER_RENDER: u64 = 10_000;

/// Nesting depth allowed at render time (minijinja's default is 500); the language allows
/// [`template_language::MAX_NESTING`] levels of blocks and expressions.
const RECURSION_LIMIT: usize = 64;

/// Compiled bodies kept by the process (each well under 100 KB), shared by every campaign and
/// request that uses the same text.
const COMPILED_CACHE_ENTRIES: usize = 256;

/// The one template a [`CompiledTemplate`]'s environment holds.
const TEMPLATE_NAME: &str = "body";

/// The recipient a body is rehearsed for when it is parsed.
const SAMPLE_PHONE: &str = "6281234567890";
const SAMPLE_NAME: &str = "Sample";

/// A message body of 1 to [`MAX_BODY_CHARS`] characters in Herald's template language.
///
/// Serde reads it as stored text ([`TemplateBody::stored`]): bodies are checked when a tenant
/// saves them, and events only ever hold bodies that were.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub struct TemplateBody(String);

impl TemplateBody {
    /// Accepts `source` if it is not blank (WhatsApp refuses empty text), has at most
    /// [`MAX_BODY_CHARS`] characters, parses, stays within the template language and survives
    /// the rehearsal (see the module's decisions).
    ///
    /// A syntax error is [`TemplateError::Syntax`], a construct outside the language (`set`,
    /// `range(...)`, an unknown filter) [`TemplateError::NotAllowed`]; both say what and where
    /// (`… at line 1, column 7`), since authors fix templates from that message alone. A body that
    /// runs out of fuel or output for any recipient at all is [`TemplateError::Render`].
    pub fn parse(source: &str) -> Result<TemplateBody, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let chars = source.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(TemplateError::TooLong(chars));
        }
        let body = TemplateBody(source.to_owned());
        body.compile()?.rehearse(source)?;
        Ok(body)
    }

    /// A body read back from our own storage, which was [`parse`](Self::parse)d when it was
    /// saved: not checked again. Text that fails to compile later (saved under an older, larger
    /// language) fails when compiled, with the reason, never silently.
    pub fn stored(source: String) -> TemplateBody {
        TemplateBody(source)
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Top-level variables the body reads and does not define itself (`name`, `city` for
    /// `Hi {{ name }} from {{ city }}`), so a campaign can warn about recipients' missing columns.
    /// Loop variables are not listed; a body that does not compile reads nothing.
    pub fn variables(&self) -> BTreeSet<String> {
        self.compile()
            .map(|compiled| compiled.variables.clone())
            .unwrap_or_default()
    }

    /// The body compiled for rendering, from the process's cache when this text was compiled
    /// before: a campaign compiles once, not per recipient, and template lists do not re-parse.
    pub fn compile(&self) -> Result<Arc<CompiledTemplate>, TemplateError> {
        let key: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let cache = COMPILED.get_or_init(Default::default);
        if let Some(hit) = lock(cache).get(&key) {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(CompiledTemplate::new(&self.0)?);
        let mut cache = lock(cache);
        if cache.len() >= COMPILED_CACHE_ENTRIES {
            // Any entry will do: a body evicted too early is compiled again in microseconds.
            if let Some(evicted) = cache.keys().next().copied() {
                cache.remove(&evicted);
            }
        }
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }
}

/// Compiled bodies by SHA-256 of their text (see [`TemplateBody::compile`]).
static COMPILED: OnceLock<Mutex<HashMap<[u8; 32], Arc<CompiledTemplate>>>> = OnceLock::new();

/// The cache stays usable after a panic elsewhere: it only ever holds complete entries.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A body compiled once and rendered per recipient; `Send + Sync`, so dispatch workers share one
/// behind an `Arc`.
pub struct CompiledTemplate {
    /// A sandboxed environment holding the compiled body under [`TEMPLATE_NAME`]. The environment,
    /// not a `Template`, is kept because a `Template` borrows its environment.
    env: Environment<'static>,
    /// What [`TemplateBody::variables`] answers.
    variables: BTreeSet<String>,
}

impl CompiledTemplate {
    fn new(source: &str) -> Result<CompiledTemplate, TemplateError> {
        template_language::check(source)?;
        let mut env = sandbox();
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|err| syntax_error(&err, source))?;
        let variables = env
            .get_template(TEMPLATE_NAME)
            .map(|template| template.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default();
        Ok(CompiledTemplate { env, variables })
    }

    /// Renders the message for one recipient.
    ///
    /// Context: the recipient's `vars` (top-level `null`s dropped, so they count as missing),
    /// `phone` set to `phone` whatever `vars` says (the number we send to is the truth), and
    /// `name` from `vars["name"]` if set, else `name`. Variables larger than [`MAX_VARS_BYTES`]
    /// are refused.
    pub fn render(
        &self,
        phone: &str,
        name: Option<&str>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let size = vars
            .iter()
            .try_fold(0, |size, (key, value)| json_size(value, size + key.len()));
        if size.is_none() {
            return Err(TemplateError::Render(format!(
                "the recipient's variables are larger than {} KB",
                MAX_VARS_BYTES / 1024
            )));
        }
        let has_name = vars.get("name").is_some_and(|value| !value.is_null());
        let fallback_name = name
            .filter(|_| !has_name)
            .map(|name| ("name", Value::from(name)));
        let context: Value = vars
            .iter()
            .filter(|(key, value)| !value.is_null() && key.as_str() != "phone")
            .map(|(key, value)| (key.as_str(), Value::from_serialize(value)))
            .chain(std::iter::once(("phone", Value::from(phone))))
            .chain(fallback_name)
            .collect();
        self.render_context(context)
            .map_err(|err| render_error(&err))?
            .map_err(|err| TemplateError::Render(err.to_string()))
    }

    /// Renders for a sample recipient without variables and refuses the body if that fails in a
    /// way no recipient's data could avoid.
    fn rehearse(&self, source: &str) -> Result<(), TemplateError> {
        let context = Value::from_iter([
            ("phone", Value::from(SAMPLE_PHONE)),
            ("name", Value::from(SAMPLE_NAME)),
        ]);
        match self.render_context(context) {
            Ok(_) => Ok(()),
            Err(err) => match err.kind() {
                // The language check refuses these first; kept in case the two ever disagree.
                ErrorKind::UnknownFilter
                | ErrorKind::UnknownTest
                | ErrorKind::UnknownFunction
                | ErrorKind::UnknownMethod
                | ErrorKind::TemplateNotFound
                | ErrorKind::BadInclude => Err(syntax_error(&err, source)),
                ErrorKind::OutOfFuel | ErrorKind::WriteFailure => Err(render_error(&err)),
                // Arithmetic on a missing number and the like: the recipient's data decides.
                _ => Ok(()),
            },
        }
    }

    /// Renders into [`CappedOutput`]. The outer error is minijinja's; the inner one, invalid
    /// UTF-8, cannot happen since minijinja writes `str`s, but is not unwrapped.
    fn render_context(
        &self,
        context: Value,
    ) -> Result<Result<String, std::string::FromUtf8Error>, minijinja::Error> {
        let template = self.env.get_template(TEMPLATE_NAME)?;
        let mut out = CappedOutput::default();
        template.render_captured_to(context, &mut out)?;
        Ok(String::from_utf8(out.bytes))
    }
}

/// `size` plus the size of `value`, or `None` once that passes [`MAX_VARS_BYTES`] (checked as it
/// goes, so a huge value is not walked to the end).
fn json_size(value: &serde_json::Value, size: usize) -> Option<usize> {
    use serde_json::Value as J;
    let size = match value {
        J::Null | J::Bool(_) | J::Number(_) => size + 8,
        J::String(s) => size + s.len() + 2,
        J::Array(items) => items
            .iter()
            .try_fold(size + 2, |size, item| json_size(item, size + 1))?,
        J::Object(map) => map.iter().try_fold(size + 2, |size, (key, item)| {
            json_size(item, size + key.len() + 4)
        })?,
    };
    (size <= MAX_VARS_BYTES).then_some(size)
}

/// The environment every body is rendered in: the language's filters and tests only, and the
/// settings of the module's decisions.
fn sandbox() -> Environment<'static> {
    let mut env = template_language::environment();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL_PER_RENDER));
    env.set_recursion_limit(RECURSION_LIMIT);
    // The body is the author's text verbatim, final newline included.
    env.set_keep_trailing_newline(true);
    // `none` (a JSON null inside a variable) would print as "none"; a message should show nothing.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

fn render_error(err: &minijinja::Error) -> TemplateError {
    let message = match err.kind() {
        ErrorKind::WriteFailure => {
            format!("the message would be longer than {MAX_RENDERED_CHARS} characters")
        }
        ErrorKind::OutOfFuel => "the template does too much work for one message".to_owned(),
        _ => err.to_string(),
    };
    TemplateError::Render(message)
}

/// Collects rendered output and fails the write that would pass [`MAX_RENDERED_CHARS`], which
/// stops minijinja there instead of letting a template build megabytes first.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    chars: usize,
}

impl io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // minijinja writes whole `str`s, so counting the bytes that start a UTF-8 sequence counts
        // characters.
        let chars = buf.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
        if self.chars + chars > MAX_RENDERED_CHARS {
            return Err(io::Error::other("rendered message too long"));
        }
        self.chars += chars;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<String> for TemplateBody {
    fn from(source: String) -> TemplateBody {
        TemplateBody::stored(source)
    }
}

impl From<TemplateBody> for String {
    fn from(body: TemplateBody) -> String {
        body.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};
    use std::time::{Duration, Instant};

    fn vars(value: serde_json::Value) -> Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn render(
        source: &str,
        phone: &str,
        name: Option<&str>,
        recipient: serde_json::Value,
    ) -> Result<String, TemplateError> {
        TemplateBody::parse(source)?
            .compile()?
            .render(phone, name, &vars(recipient))
    }

    #[test]
    fn renders_name_phone_and_custom_variables() {
        let out = render(
            "Hi {{ name }} ({{ phone }}), see you in {{ city }} & bring {{ items | join(', ') }}",
            "6281234567890",
            Some("Ayu"),
            json!({"city": "Bandung", "items": ["tea", "cake"]}),
        );
        assert_eq!(
            out.as_deref(),
            Ok("Hi Ayu (6281234567890), see you in Bandung & bring tea, cake")
        );
    }

    #[test]
    fn phone_is_always_the_recipients_and_name_var_wins_over_name() {
        let out = render(
            "{{ name }} {{ phone }}",
            "6281234567890",
            Some("Ayu"),
            json!({"name": "Bu Ayu", "phone": "000"}),
        );
        assert_eq!(out.as_deref(), Ok("Bu Ayu 6281234567890"));
    }

    #[test]
    fn missing_variables_render_empty() {
        let out = render(
            "Hi {{ name }}{{ city }}{{ address.street }}!",
            "62",
            None,
            json!({}),
        );
        assert_eq!(out.as_deref(), Ok("Hi !"));
    }

    #[test]
    fn nulls_count_as_missing() {
        let out = render(
            "Hi {{ name | default('there') }}, {{ city }}{{ address.zip }}.",
            "62",
            None,
            json!({"name": null, "city": null, "address": {"zip": null}}),
        );
        assert_eq!(out.as_deref(), Ok("Hi there, ."));
        let out = render("Hi {{ name }}", "62", Some("Ayu"), json!({"name": null}));
        assert_eq!(out.as_deref(), Ok("Hi Ayu"));
    }

    #[test]
    fn default_filter_gives_authors_a_fallback() {
        let out = render("Hi {{ name | default('there') }}", "62", None, json!({}));
        assert_eq!(out.as_deref(), Ok("Hi there"));
    }

    #[test]
    fn no_html_escaping_and_text_kept_verbatim() {
        let out = render(
            "<b>{{ x }}</b>\n",
            "62",
            None,
            json!({"x": "Tom & \"Jerry\""}),
        );
        assert_eq!(out.as_deref(), Ok("<b>Tom & \"Jerry\"</b>\n"));
    }

    #[test]
    fn syntax_error_says_what_and_where() {
        let err = TemplateBody::parse("Hello\n{{ name");
        let Err(TemplateError::Syntax(message)) = err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert!(message.contains("syntax error"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("column"), "{message}");
        let err = TemplateBody::parse("{% if x %}unclosed");
        assert!(matches!(err, Err(TemplateError::Syntax(_))), "{err:?}");
    }

    #[test]
    fn blank_and_overlong_bodies_are_refused() {
        assert_eq!(TemplateBody::parse(""), Err(TemplateError::Empty));
        assert_eq!(TemplateBody::parse(" \n\t"), Err(TemplateError::Empty));
        assert!(TemplateBody::parse(&"é".repeat(MAX_BODY_CHARS)).is_ok());
        assert_eq!(
            TemplateBody::parse(&"é".repeat(MAX_BODY_CHARS + 1)),
            Err(TemplateError::TooLong(MAX_BODY_CHARS + 1))
        );
    }

    #[test]
    fn variables_lists_what_the_body_reads() {
        let body = TemplateBody::parse("Hi {{ name }} from {{ city }}");
        let names = body.map(|b| b.variables());
        let expected: BTreeSet<String> = ["city", "name"].map(String::from).into();
        assert_eq!(names, Ok(expected));
    }

    #[test]
    fn variables_skips_locals_and_globals() {
        let body = TemplateBody::parse(
            "{% for i in [1, 2] %}{{ i }}{{ loop.index }}{% endfor %}{% for o in orders %}{{ o.id }}{% endfor %}{% for k, v in pairs %}{{ k }}{% endfor %}",
        );
        let names = body.map(|b| b.variables());
        let expected: BTreeSet<String> = ["orders", "pairs"].map(String::from).into();
        assert_eq!(names, Ok(expected));
    }

    fn is_render_error(result: &Result<impl std::fmt::Debug, TemplateError>, part: &str) -> bool {
        matches!(result, Err(TemplateError::Render(m)) if m.contains(part))
    }

    #[test]
    fn loop_bomb_is_refused_when_parsed() {
        let started = Instant::now();
        let ten = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
        let source = format!(
            "{}{}",
            format!("{{% for a in {ten} %}}").repeat(6),
            "{% endfor %}".repeat(6)
        );
        let body = TemplateBody::parse(&source);
        assert!(is_render_error(&body, "too much work"), "{body:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn loop_bomb_over_recipient_data_runs_out_of_fuel() {
        let started = Instant::now();
        let items: Vec<u32> = (0..1000).collect();
        let out = render(
            "{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}{% endfor %}",
            "62",
            None,
            json!({ "items": items }),
        );
        assert!(is_render_error(&out, "too much work"), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn oversized_output_is_refused() {
        let ten = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
        let thousand_times = format!("{{% for a in {ten} %}}{{% for b in {ten} %}}{{% for c in {ten} %}}01234567890123456789{{% endfor %}}{{% endfor %}}{{% endfor %}}");
        let body = TemplateBody::parse(&thousand_times);
        assert!(is_render_error(&body, "longer than"), "{body:?}");
        let long_note = "x".repeat(MAX_RENDERED_CHARS);
        let out = render("Hi {{ note }}", "62", None, json!({ "note": long_note }));
        assert!(is_render_error(&out, "longer than"), "{out:?}");
        let exactly = "é".repeat(MAX_RENDERED_CHARS - 3);
        let out = render("Hi {{ note }}", "62", None, json!({ "note": exactly }));
        assert_eq!(out.map(|s| s.chars().count()), Ok(MAX_RENDERED_CHARS));
    }

    #[test]
    fn unknown_filters_are_refused_when_parsed() {
        let body = TemplateBody::parse("Hi\n{{ name | uppercase }}");
        assert!(
            matches!(&body, Err(TemplateError::NotAllowed(m)) if m.contains("filter `uppercase`") && m.contains("line 2")),
            "{body:?}"
        );
        let body = TemplateBody::parse("{% if name is shouting %}!{% endif %}");
        assert!(
            matches!(&body, Err(TemplateError::NotAllowed(m)) if m.contains("test `shouting`")),
            "{body:?}"
        );
    }

    #[test]
    fn errors_that_depend_on_recipient_data_do_not_refuse_a_body() {
        let body = TemplateBody::parse("You have {{ points + 10 }} points");
        assert!(body.is_ok(), "{body:?}");
        let out = render(
            "You have {{ points + 10 }} points",
            "62",
            None,
            json!({"points": 5}),
        );
        assert_eq!(out.as_deref(), Ok("You have 15 points"));
    }

    #[test]
    fn runtime_errors_are_render_errors() {
        let out = render("{{ x - 1 }}", "62", None, json!({"x": "text"}));
        assert!(matches!(out, Err(TemplateError::Render(_))), "{out:?}");
    }

    #[test]
    fn serde_reads_stored_bodies_without_checking_them_again() {
        let body = TemplateBody::parse("Hi {{ name }}");
        let json = body.as_ref().map(|b| serde_json::to_string(b).ok());
        assert_eq!(json, Ok(Some("\"Hi {{ name }}\"".to_owned())));
        let back: Result<TemplateBody, _> = serde_json::from_str("\"Hi {{ name }}\"");
        assert_eq!(back.ok(), body.ok());
        // Stored text is trusted when read; what no longer compiles fails when compiled, with
        // the reason (a body saved before the language was narrowed, for instance).
        let stored: Result<TemplateBody, _> = serde_json::from_str("\"{% set a = 1 %}{{ a }}\"");
        let compiled = stored.map(|b| b.compile().err());
        assert!(
            matches!(&compiled, Ok(Some(TemplateError::NotAllowed(m))) if m.contains("set")),
            "{:?}",
            compiled.map(|c| c.map(|e| e.to_string()))
        );
    }

    #[test]
    fn compile_is_cached_per_text() {
        let a = TemplateBody::stored("Cached {{ name }} once".into()).compile();
        let b = TemplateBody::stored("Cached {{ name }} once".into()).compile();
        let same = matches!((&a, &b), (Ok(a), Ok(b)) if Arc::ptr_eq(a, b));
        assert!(
            same,
            "the second compile of the same text is the cached one"
        );
    }

    #[test]
    fn oversized_variables_fail_the_recipient() {
        let big = "x".repeat(MAX_VARS_BYTES);
        let out = render("Hi {{ name }}", "62", None, json!({ "note": big }));
        assert!(is_render_error(&out, "larger than 64 KB"), "{out:?}");
        let nested: Vec<_> = (0..MAX_VARS_BYTES / 8).map(|_| json!([1])).collect();
        let out = render("Hi {{ name }}", "62", None, json!({ "n": nested }));
        assert!(is_render_error(&out, "larger than"), "{out:?}");
    }

    #[test]
    fn compiled_template_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledTemplate>();
    }
}
