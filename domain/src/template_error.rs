//! Why a template body was refused or could not be rendered, and where in the body: shared by the
//! body itself ([`crate::template_body`]) and the check of its language
//! ([`crate::template_language`]), so neither has to reach into the other.

/// Why a body was refused or could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is empty")]
    Empty,
    #[error("template is too long ({0} characters, at most 4096)")]
    TooLong(usize),
    #[error("template does not parse: {0}")]
    Syntax(String),
    #[error("template uses what message templates do not allow: {0}")]
    NotAllowed(String),
    #[error("template could not be rendered: {0}")]
    Render(String),
}

pub(crate) fn syntax_error(err: &minijinja::Error, source: &str) -> TemplateError {
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
pub(crate) fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
