//! Message bodies with variables: `Hi {{ name }}, your code is {{ code }}`.
//!
//! A [`TemplateBody`] is source text that minijinja has already accepted, so a stored template
//! always compiles. A campaign compiles it once into a [`CompiledTemplate`] and renders it per
//! recipient; that is the dispatch hot path (5,000+ renders/s), so rendering never re-parses.
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
//!   rendering is sandboxed: a fuel limit bounds the work of one render (a `{% for %}` bomb fails
//!   instead of hanging a worker), a recursion limit bounds nesting, and output beyond
//!   [`MAX_RENDERED_CHARS`] stops the render as soon as it is written.
//! - A body is rehearsed when it is parsed: rendered once for a sample recipient without
//!   variables. minijinja resolves filters, tests and functions only at render time, so without
//!   this `{{ name | uppercase }}` (a typo for `upper`) would be accepted and then fail for every
//!   recipient of a 100,000-message campaign. Failures that depend on a recipient's data are not
//!   the body's fault and do not refuse it.

use std::collections::BTreeSet;
use std::io;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// Longest body accepted, in characters; WhatsApp text messages are limited to 4,096.
pub const MAX_BODY_CHARS: usize = 4096;

/// Longest rendered message, in characters. Variables may legitimately make a body longer than its
/// source, but not this much: beyond it the render is an error rather than a giant message.
pub const MAX_RENDERED_CHARS: usize = MAX_BODY_CHARS * 4;

/// Instructions one render may execute. A body of 4,096 characters with variables, conditions and
/// a loop over a recipient's list runs a few thousand; a runaway loop stops within milliseconds.
const FUEL_PER_RENDER: u64 = 50_000;

/// Nesting depth allowed at render time (minijinja's default is 500); message bodies need a few.
const RECURSION_LIMIT: usize = 64;

/// The one template a [`CompiledTemplate`]'s environment holds.
const TEMPLATE_NAME: &str = "body";

/// The recipient a body is rehearsed for when it is parsed.
const SAMPLE_PHONE: &str = "6281234567890";
const SAMPLE_NAME: &str = "Sample";

/// A message body that minijinja parses, of 1 to [`MAX_BODY_CHARS`] characters.
///
/// Serde goes through [`TemplateBody::parse`], so a body read from a request or an event is as
/// checked as one built in code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateBody(String);

/// Why a body was refused or could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is empty")]
    Empty,
    #[error("template is too long ({0} characters, at most 4096)")]
    TooLong(usize),
    #[error("template does not parse: {0}")]
    Syntax(String),
    #[error("template could not be rendered: {0}")]
    Render(String),
}

impl TemplateBody {
    /// Accepts `source` if it is not blank (WhatsApp refuses empty text), has at most
    /// [`MAX_BODY_CHARS`] characters, is valid minijinja syntax and survives the rehearsal (see the
    /// module's decisions).
    ///
    /// A syntax error, or an unknown filter, test or function, is [`TemplateError::Syntax`] and
    /// says what and where (`… at line 1, column 7`), since authors fix templates from that
    /// message alone. A body that runs out of fuel or output for any recipient at all is
    /// [`TemplateError::Render`].
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

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Top-level variables the body reads and does not define itself (`name`, `city` for
    /// `Hi {{ name }} from {{ city }}`), so a campaign can warn about recipients' missing columns.
    /// Loop variables, `{% set %}` names and minijinja's own globals (`range`, `namespace`, …)
    /// are not listed.
    pub fn variables(&self) -> BTreeSet<String> {
        let env = sandbox();
        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        match env.template_from_str(&self.0) {
            Ok(template) => template
                .undeclared_variables(false)
                .into_iter()
                .filter(|name| !globals.contains(name.as_str()))
                .collect(),
            // Unreachable for a parsed body; an empty set is the honest answer if it happens.
            Err(_) => BTreeSet::new(),
        }
    }

    /// Compiles the body for rendering; done once per campaign, not per recipient.
    pub fn compile(&self) -> Result<CompiledTemplate, TemplateError> {
        let mut env = sandbox();
        env.add_template_owned(TEMPLATE_NAME, self.0.clone())
            .map_err(|err| syntax_error(&err, &self.0))?;
        Ok(CompiledTemplate { env })
    }
}

/// A body compiled once per campaign and rendered per recipient; `Send + Sync`, so dispatch workers
/// share one behind an `Arc`.
pub struct CompiledTemplate {
    /// A sandboxed environment holding the compiled body under [`TEMPLATE_NAME`]. The environment,
    /// not a `Template`, is kept because a `Template` borrows its environment.
    env: Environment<'static>,
}

impl CompiledTemplate {
    /// Renders the message for one recipient.
    ///
    /// Context: the recipient's `vars` (top-level `null`s dropped, so they count as missing),
    /// `phone` set to `phone` whatever `vars` says (the number we send to is the truth), and
    /// `name` from `vars["name"]` if set, else `name`.
    pub fn render(
        &self,
        phone: &str,
        name: Option<&str>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
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

/// The environment every body is parsed and rendered in; see the module's decisions.
fn sandbox() -> Environment<'static> {
    let mut env = Environment::new();
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

fn syntax_error(err: &minijinja::Error, source: &str) -> TemplateError {
    let what = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    let position = match (err.line(), err.range()) {
        (_, Some(range)) => {
            let (line, column) = line_and_column(source, range.start);
            format!(" at line {line}, column {column}")
        }
        (Some(line), None) => format!(" at line {line}"),
        (None, None) => String::new(),
    };
    TemplateError::Syntax(format!("{what}{position}"))
}

/// 1-based line and column (in characters) of a byte offset in `source`.
fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
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

impl TryFrom<String> for TemplateBody {
    type Error = TemplateError;

    fn try_from(source: String) -> Result<TemplateBody, TemplateError> {
        TemplateBody::parse(&source)
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
            "{% set greeting = 'Hi' %}{{ greeting }} {% for i in range(3) %}{{ i }}{{ loop.index }}{% endfor %}{% for o in orders %}{{ o.id }}{% endfor %}",
        );
        let names = body.map(|b| b.variables());
        let expected: BTreeSet<String> = ["orders"].map(String::from).into();
        assert_eq!(names, Ok(expected));
    }

    fn is_render_error(result: &Result<impl std::fmt::Debug, TemplateError>, part: &str) -> bool {
        matches!(result, Err(TemplateError::Render(m)) if m.contains(part))
    }

    #[test]
    fn loop_bomb_is_refused_when_parsed() {
        let started = Instant::now();
        let body = TemplateBody::parse(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        );
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
        for source in [
            "{{ 'x' * 20000 }}",
            "{% for a in range(5000) %}0123456789{% endfor %}",
        ] {
            let body = TemplateBody::parse(source);
            assert!(is_render_error(&body, "longer than"), "{source}: {body:?}");
        }
        let long_note = "x".repeat(MAX_RENDERED_CHARS);
        let out = render("Hi {{ note }}", "62", None, json!({ "note": long_note }));
        assert!(is_render_error(&out, "longer than"), "{out:?}");
        let out = render("{{ 'é' * 16384 }}", "62", None, json!({}));
        assert_eq!(out.map(|s| s.chars().count()), Ok(MAX_RENDERED_CHARS));
    }

    #[test]
    fn unknown_filters_are_refused_when_parsed() {
        let body = TemplateBody::parse("Hi\n{{ name | uppercase }}");
        assert!(
            matches!(&body, Err(TemplateError::Syntax(m)) if m.contains("unknown filter") && m.contains("line 2")),
            "{body:?}"
        );
        let body = TemplateBody::parse("{% if name is shouting %}!{% endif %}");
        assert!(matches!(body, Err(TemplateError::Syntax(_))), "{body:?}");
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
        let out = render("{{ 'a' ~ (x - 1) }}", "62", None, json!({"x": "text"}));
        assert!(matches!(out, Err(TemplateError::Render(_))), "{out:?}");
    }

    #[test]
    fn serde_round_trip_rejects_invalid_bodies() {
        let body = TemplateBody::parse("Hi {{ name }}");
        let json = body.as_ref().map(|b| serde_json::to_string(b).ok());
        assert_eq!(json, Ok(Some("\"Hi {{ name }}\"".to_owned())));
        let back: Result<TemplateBody, _> = serde_json::from_str("\"Hi {{ name }}\"");
        assert_eq!(back.ok(), body.ok());
        assert!(serde_json::from_str::<TemplateBody>("\"Hello {{ name\"").is_err());
        assert!(serde_json::from_str::<TemplateBody>("\"\"").is_err());
    }

    #[test]
    fn compiled_template_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledTemplate>();
    }
}
