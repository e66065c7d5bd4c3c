//! The template language messages are written in: a small, bounded part of minijinja.
//!
//! A tenant's body runs on our dispatcher for each of its recipients, so the language only has
//! constructs whose cost is bounded whatever the body says (decision 0039): every expression's
//! value is at most a constant factor larger than the text and recipient data it comes from, and
//! loops can only walk data that exists (a recipient's lists, a literal list), counted by fuel.
//! The body is parsed into minijinja's syntax tree and walked here before it is compiled;
//! anything outside the language is refused naming what and where. The environment bodies run in
//! also holds only the filters and tests allowed here, so a construct the walk missed still
//! cannot reach the rest of minijinja.
//!
//! The walk matches every node kind exhaustively: a minijinja upgrade that adds one fails to
//! compile here rather than letting the new construct through.

use minijinja::machinery::{ast, parse, Span, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::Environment;

use crate::template_error::{line_and_column, syntax_error, TemplateError};

/// Filters a body may use. Each returns at most a constant factor more than its input:
/// `default` picks one of its operands, case changes grow a string at most threefold once
/// (`ß` → `SS`) and then stay put, `trim`, `first` and `last` shrink, the numeric ones return
/// numbers, `string` formats a value, and `join` is held to a variable and a short separator
/// (see [`MAX_JOIN_SEPARATOR_CHARS`]).
pub const FILTERS: &[&str] = &[
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "first",
    "float",
    "int",
    "join",
    "last",
    "length",
    "lower",
    "round",
    "string",
    "title",
    "trim",
    "upper",
];

/// Tests a body may use (`{% if name is defined %}`); all answer true or false.
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "le",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
];

/// Longest `join` separator: `join` adds it once per item, so it must stay short for the result
/// to stay within a small factor of the list it joins.
pub const MAX_JOIN_SEPARATOR_CHARS: usize = 10;

/// Deepest nesting of blocks and expressions (`{% if %}` in `{% for %}`, `a or b or c`, filter
/// chains). Messages need a handful; the limit keeps every later pass over the tree shallow.
pub const MAX_NESTING: usize = 32;

/// Refuses `source` unless it parses and uses only the language above.
pub fn check(source: &str) -> Result<(), TemplateError> {
    let whitespace = WhitespaceConfig {
        keep_trailing_newline: true,
        ..WhitespaceConfig::default()
    };
    let tree = parse(source, "body", SyntaxConfig, whitespace)
        .map_err(|err| syntax_error(&err, source))?;
    Walk { source }.stmt(&tree, 0)
}

/// The environment bodies are compiled and rendered in: only [`FILTERS`] and [`TESTS`], no
/// global functions.
pub fn environment() -> Environment<'static> {
    use minijinja::{filters as f, tests as t};
    let mut env = Environment::empty();
    env.add_filter("abs", f::abs);
    env.add_filter("capitalize", f::capitalize);
    env.add_filter("count", f::length);
    env.add_filter("d", f::default);
    env.add_filter("default", f::default);
    env.add_filter("first", f::first);
    env.add_filter("float", f::float);
    env.add_filter("int", f::int);
    env.add_filter("join", f::join);
    env.add_filter("last", f::last);
    env.add_filter("length", f::length);
    env.add_filter("lower", f::lower);
    env.add_filter("round", f::round);
    env.add_filter("string", f::string);
    env.add_filter("title", f::title);
    env.add_filter("trim", f::trim);
    env.add_filter("upper", f::upper);
    env.add_test("boolean", t::is_boolean);
    env.add_test("defined", t::is_defined);
    env.add_test("divisibleby", t::is_divisibleby);
    env.add_test("endingwith", t::is_endingwith);
    env.add_test("eq", t::is_eq);
    env.add_test("even", t::is_even);
    env.add_test("false", t::is_false);
    env.add_test("float", t::is_float);
    env.add_test("ge", t::is_ge);
    env.add_test("gt", t::is_gt);
    env.add_test("in", t::is_in);
    env.add_test("integer", t::is_integer);
    env.add_test("le", t::is_le);
    env.add_test("lt", t::is_lt);
    env.add_test("mapping", t::is_mapping);
    env.add_test("ne", t::is_ne);
    env.add_test("none", t::is_none);
    env.add_test("number", t::is_number);
    env.add_test("odd", t::is_odd);
    env.add_test("sequence", t::is_sequence);
    env.add_test("startingwith", t::is_startingwith);
    env.add_test("string", t::is_string);
    env.add_test("true", t::is_true);
    env.add_test("undefined", t::is_undefined);
    env
}

struct Walk<'s> {
    source: &'s str,
}

type Checked = Result<(), TemplateError>;

impl Walk<'_> {
    fn refuse(&self, what: &str, span: Span) -> TemplateError {
        let (line, column) = line_and_column(self.source, span.start_offset as usize);
        TemplateError::NotAllowed(format!("{what} at line {line}, column {column}"))
    }

    fn deeper(&self, depth: usize, span: Span) -> Result<usize, TemplateError> {
        if depth >= MAX_NESTING {
            return Err(self.refuse(&format!("nesting deeper than {MAX_NESTING} levels"), span));
        }
        Ok(depth + 1)
    }

    fn stmts(&self, stmts: &[ast::Stmt<'_>], depth: usize) -> Checked {
        stmts.iter().try_for_each(|stmt| self.stmt(stmt, depth))
    }

    fn stmt(&self, stmt: &ast::Stmt<'_>, depth: usize) -> Checked {
        use ast::Stmt;
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children, depth),
            Stmt::EmitRaw(_) => Ok(()),
            Stmt::EmitExpr(e) => self.expr(&e.expr, depth),
            Stmt::IfCond(c) => {
                let depth = self.deeper(depth, c.span())?;
                self.expr(&c.expr, depth)?;
                self.stmts(&c.true_body, depth)?;
                self.stmts(&c.false_body, depth)
            }
            Stmt::ForLoop(l) => {
                let depth = self.deeper(depth, l.span())?;
                if l.recursive {
                    return Err(self.refuse("a recursive `for` loop", l.span()));
                }
                self.target(&l.target)?;
                self.expr(&l.iter, depth)?;
                if let Some(filter) = &l.filter_expr {
                    self.expr(filter, depth)?;
                }
                self.stmts(&l.body, depth)?;
                self.stmts(&l.else_body, depth)
            }
            Stmt::Set(s) => Err(self.refuse("`{% set %}`", s.span())),
            Stmt::SetBlock(s) => Err(self.refuse("`{% set %}`", s.span())),
            Stmt::WithBlock(s) => Err(self.refuse("`{% with %}`", s.span())),
            Stmt::AutoEscape(s) => Err(self.refuse("`{% autoescape %}`", s.span())),
            Stmt::FilterBlock(s) => Err(self.refuse("`{% filter %}`", s.span())),
            Stmt::Do(s) => Err(self.refuse("`{% do %}`", s.span())),
        }
    }

    /// A loop's target: names only (`item`, or `key, value`).
    fn target(&self, target: &ast::Expr<'_>) -> Checked {
        match target {
            ast::Expr::Var(_) => Ok(()),
            ast::Expr::List(l) => l.items.iter().try_for_each(|item| self.target(item)),
            other => Err(self.refuse("a loop target other than names", other.span())),
        }
    }

    fn expr(&self, expr: &ast::Expr<'_>, depth: usize) -> Checked {
        use ast::Expr;
        let depth = self.deeper(depth, expr.span())?;
        match expr {
            Expr::Var(_) | Expr::Const(_) => Ok(()),
            Expr::GetAttr(a) => self.expr(&a.expr, depth),
            Expr::GetItem(i) => {
                self.expr(&i.expr, depth)?;
                self.expr(&i.subscript_expr, depth)
            }
            Expr::Slice(s) => {
                self.expr(&s.expr, depth)?;
                [&s.start, &s.stop, &s.step]
                    .into_iter()
                    .flatten()
                    .try_for_each(|e| self.expr(e, depth))
            }
            Expr::UnaryOp(u) => self.expr(&u.expr, depth),
            Expr::BinOp(b) => {
                self.binop(b)?;
                self.expr(&b.left, depth)?;
                self.expr(&b.right, depth)
            }
            Expr::Compare(c) => {
                self.expr(&c.expr, depth)?;
                c.ops.iter().try_for_each(|op| self.expr(&op.expr, depth))
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, depth)?;
                self.expr(&i.true_expr, depth)?;
                i.false_expr.iter().try_for_each(|e| self.expr(e, depth))
            }
            Expr::Filter(f) => self.filter(f, depth),
            Expr::Test(t) => {
                if !TESTS.contains(&t.name) {
                    return Err(self.refuse(
                        &format!(
                            "the test `{}` (allowed tests: {})",
                            t.name,
                            TESTS.join(", ")
                        ),
                        t.span(),
                    ));
                }
                self.expr(&t.expr, depth)?;
                self.args(&t.args, depth)
            }
            Expr::List(l) => l.items.iter().try_for_each(|e| self.expr(e, depth)),
            Expr::Map(m) => Err(self.refuse("a map literal", m.span())),
            Expr::Call(c) => Err(self.refuse(
                "calling a function or method (such as `range(...)` or `x.upper()`)",
                c.span(),
            )),
        }
    }

    /// Arithmetic that only ever yields numbers. `~`, `*` and `**` are refused (`~` and `*` build
    /// strings and lists, `"x" * 100000000`), as is `+` unless one side is a number literal: on
    /// strings and lists `+` concatenates.
    fn binop(&self, b: &ast::Spanned<ast::BinOp<'_>>) -> Checked {
        use ast::BinOpKind as K;
        let symbol = match b.op {
            K::Concat => "~",
            K::Mul => "*",
            K::Pow => "**",
            K::Add if !is_number_literal(&b.left) && !is_number_literal(&b.right) => {
                return Err(self.refuse(
                    "`+` without a number on one side (write text side by side instead)",
                    b.span(),
                ))
            }
            _ => return Ok(()),
        };
        Err(self.refuse(
            &format!("the `{symbol}` operator (write text side by side instead)"),
            b.span(),
        ))
    }

    fn filter(&self, f: &ast::Spanned<ast::Filter<'_>>, depth: usize) -> Checked {
        if !FILTERS.contains(&f.name) {
            return Err(self.refuse(
                &format!(
                    "the filter `{}` (allowed filters: {})",
                    f.name,
                    FILTERS.join(", ")
                ),
                f.span(),
            ));
        }
        if f.name == "join" {
            self.join(f)?;
        }
        if let Some(input) = &f.expr {
            self.expr(input, depth)?;
        }
        self.args(&f.args, depth)
    }

    /// `join` adds its separator once per item, and a string's items are its characters, so it
    /// joins a variable (not the output of another filter) with a short literal separator.
    fn join(&self, f: &ast::Spanned<ast::Filter<'_>>) -> Checked {
        if !f.expr.as_ref().is_some_and(is_variable_path) {
            return Err(self.refuse(
                "`join` of anything but a variable (such as `items | join(\", \")`)",
                f.span(),
            ));
        }
        let separator_ok = match f.args.as_slice() {
            [] => true,
            [ast::CallArg::Pos(ast::Expr::Const(c))] => c
                .value
                .as_str()
                .is_some_and(|s| s.chars().count() <= MAX_JOIN_SEPARATOR_CHARS),
            _ => false,
        };
        if !separator_ok {
            return Err(self.refuse(
                &format!(
                    "a `join` separator other than a text of at most \
                     {MAX_JOIN_SEPARATOR_CHARS} characters"
                ),
                f.span(),
            ));
        }
        Ok(())
    }

    fn args(&self, args: &[ast::CallArg<'_>], depth: usize) -> Checked {
        args.iter().try_for_each(|arg| match arg {
            ast::CallArg::Pos(e) | ast::CallArg::Kwarg(_, e) => self.expr(e, depth),
            ast::CallArg::PosSplat(e) | ast::CallArg::KwargSplat(e) => {
                Err(self.refuse("`*args` or `**kwargs` arguments", e.span()))
            }
        })
    }
}

fn is_number_literal(expr: &ast::Expr<'_>) -> bool {
    matches!(expr, ast::Expr::Const(c) if c.value.is_number())
}

/// `items`, `order.items`, `orders[0].items`: data the recipient has, not something computed.
fn is_variable_path(expr: &ast::Expr<'_>) -> bool {
    match expr {
        ast::Expr::Var(_) => true,
        ast::Expr::GetAttr(a) => is_variable_path(&a.expr),
        ast::Expr::GetItem(i) => {
            is_variable_path(&i.expr) && matches!(i.subscript_expr, ast::Expr::Const(_))
        }
        _ => false,
    }
}
