//! Text with `{{ }}` actions; an action is a pipeline (`a | b`) of commands; a command is a
//! field (`.PVCName`, `.PVCNamespace`, `.PVName` for volumes; `.VolumeSnapshotName`,
//! `.VolumeSnapshotNamespace`, `.VolumeSnapshotContentName` for snapshots), a literal (string,
//! integer, `true`/`false`),
//! a parenthesised pipeline, or a call of `field`, `substring`, `toUpper`, `toLower` or
//! `contains` with arguments, the piped value going last. `{{-`/`-}}` trim the whitespace beside
//! the action and `{{/* */}}` is a comment, as in Go. Anything else is an error.

/// The fields a template may read, by name (`PVCName`), with their values.
pub(crate) struct Props<'a> {
    pub fields: &'a [(&'static str, &'a str)],
}

impl Props<'_> {
    fn names(&self) -> String {
        self.fields
            .iter()
            .map(|(n, _)| format!(".{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const FUNCTIONS: &str = "field, substring, toUpper, toLower, contains";
/// Bounds the recursion of parenthesised pipelines.
const MAX_NESTING: usize = 16;

type Res<T> = Result<T, String>;

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "integer",
            Value::Bool(_) => "boolean",
        }
    }

    fn into_text(self) -> String {
        match self {
            Value::Str(s) => s,
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Field(String),
    Ident(String),
    Lit(Value),
    Pipe,
    Open,
    Close,
}

enum Node {
    Field(String),
    Lit(Value),
    Call(String, Vec<Node>),
    Pipeline(Vec<Node>),
}

/// How an action ends: its body, whether `-}}` trims the text after it, and the rest.
struct Action<'s> {
    body: Option<&'s str>,
    trim_after: bool,
    rest: &'s str,
}

pub(crate) fn render(src: &str, props: &Props<'_>) -> Res<String> {
    let mut out = String::new();
    let mut rest = src;
    let mut trim_start = false;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let trim_before = after.starts_with('-') && after[1..].starts_with(is_space);
        push_text(&mut out, &rest[..open], trim_start, trim_before);
        let action = split_action(if trim_before { &after[2..] } else { after })?;
        if let Some(body) = action.body {
            out.push_str(&eval_action(body, props)?);
        }
        trim_start = action.trim_after;
        rest = action.rest;
    }
    push_text(&mut out, rest, trim_start, false);
    Ok(out)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn push_text(out: &mut String, text: &str, trim_start: bool, trim_end: bool) {
    let text = if trim_start {
        text.trim_start_matches(is_space)
    } else {
        text
    };
    let text = if trim_end {
        text.trim_end_matches(is_space)
    } else {
        text
    };
    out.push_str(text);
}

/// Finds the `}}` closing an action, skipping quoted strings, which may contain `}}`.
fn split_action(s: &str) -> Res<Action<'_>> {
    if let Some(comment) = s.strip_prefix("/*") {
        return split_comment(comment);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = skip_quoted(bytes, i)?,
            b'`' => {
                let end = s[i + 1..].find('`').ok_or("unterminated raw string")?;
                i += end + 2;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                let trim = i >= 2 && bytes[i - 1] == b'-' && is_space(char::from(bytes[i - 2]));
                let end = if trim { i - 2 } else { i };
                return Ok(Action {
                    body: Some(&s[..end]),
                    trim_after: trim,
                    rest: &s[i + 2..],
                });
            }
            _ => i += 1,
        }
    }
    Err("unclosed action (missing \"}}\")".into())
}

/// Index just past the closing quote of the string starting at `start`.
fn skip_quoted(bytes: &[u8], start: usize) -> Res<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'\n' => break,
            _ if b == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unterminated quoted string".into())
}

fn split_comment(s: &str) -> Res<Action<'_>> {
    let end = s.find("*/").ok_or("unclosed comment")?;
    let after = &s[end + 2..];
    if let Some(rest) = after.strip_prefix("}}") {
        return Ok(Action {
            body: None,
            trim_after: false,
            rest,
        });
    }
    let mut chars = after.chars();
    if chars.next().is_some_and(is_space)
        && let Some(rest) = chars.as_str().strip_prefix("-}}")
    {
        return Ok(Action {
            body: None,
            trim_after: true,
            rest,
        });
    }
    Err("comment ends before the closing \"}}\"".into())
}

fn eval_action(body: &str, props: &Props<'_>) -> Res<String> {
    let tokens = lex(body)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
    };
    let pipeline = parser.pipeline(0)?;
    if let Some(token) = parser.tokens.get(parser.pos) {
        return Err(format!("unexpected {token:?} in action"));
    }
    Ok(eval_pipeline(&pipeline, props)?.into_text())
}

// ---- lexing ----

fn lex(body: &str) -> Res<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            _ if c.is_whitespace() => {
                rest = &rest[c.len_utf8()..];
                continue;
            }
            '|' => (Token::Pipe, 1),
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '"' => lex_quoted(rest)?,
            '`' => lex_raw(rest)?,
            '.' => lex_field(rest)?,
            '$' => return Err("variables are not supported".into()),
            '\'' => return Err("character constants are not supported".into()),
            ':' | '=' | ',' => return Err("variable declarations are not supported".into()),
            '0'..='9' | '+' | '-' => lex_number(rest)?,
            _ if c.is_alphabetic() || c == '_' => lex_ident(rest)?,
            _ => return Err(format!("unexpected {c:?} in action")),
        };
        tokens.push(token);
        rest = &rest[len..];
    }
    Ok(tokens)
}

/// Length of the identifier at the start of `s`.
fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn lex_field(s: &str) -> Res<(Token, usize)> {
    let name_len = ident_len(&s[1..]);
    if name_len == 0 {
        return Err("\".\" alone is not supported; use a field such as .PVCName".into());
    }
    let name = &s[1..=name_len];
    if s[1 + name_len..].starts_with('.') {
        return Err(format!("field .{name} has no fields"));
    }
    Ok((Token::Field(name.to_owned()), 1 + name_len))
}

fn lex_ident(s: &str) -> Res<(Token, usize)> {
    let len = ident_len(s);
    let word = &s[..len];
    let token = match word {
        "true" => Token::Lit(Value::Bool(true)),
        "false" => Token::Lit(Value::Bool(false)),
        "field" | "substring" | "toUpper" | "toLower" | "contains" => Token::Ident(word.to_owned()),
        "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break" | "continue" | "nil" => {
            return Err(format!("\"{word}\" is not supported"));
        }
        _ => {
            return Err(format!("function \"{word}\" is not allowed (allowed: {FUNCTIONS})"));
        }
    };
    Ok((token, len))
}

/// Decimal integers with an optional sign; Go's other number forms are refused.
fn lex_number(s: &str) -> Res<(Token, usize)> {
    let sign = usize::from(s.starts_with(['+', '-']));
    let len = sign
        + s[sign..]
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(s.len() - sign, |(i, _)| i);
    let text = &s[..len];
    let digits = &text[sign..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("unsupported number {text:?} (use decimal integers)"));
    }
    let n = text
        .parse::<i64>()
        .map_err(|_| format!("number {text:?} is out of range"))?;
    Ok((Token::Lit(Value::Int(n)), len))
}

fn lex_raw(s: &str) -> Res<(Token, usize)> {
    let end = s[1..].find('`').ok_or("unterminated raw string")?;
    Ok((Token::Lit(Value::Str(s[1..=end].to_owned())), end + 2))
}

/// A Go interpreted string literal: `\\ \" \n \t \r \a \b \f \v \xHH \uHHHH \UHHHHHHHH`.
fn lex_quoted(s: &str) -> Res<(Token, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Token::Lit(Value::Str(out)), i + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    'x' => hex_escape(&mut chars, 2)?,
                    'u' => hex_escape(&mut chars, 4)?,
                    'U' => hex_escape(&mut chars, 8)?,
                    _ => return Err(format!("unsupported escape \\{e} in string")),
                });
            }
            _ => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

fn hex_escape(chars: &mut impl Iterator<Item = (usize, char)>, digits: usize) -> Res<char> {
    let mut code = 0u32;
    for _ in 0..digits {
        let (_, c) = chars.next().ok_or("short hex escape in string")?;
        let d = c.to_digit(16).ok_or("bad hex escape in string")?;
        code = code * 16 + d;
    }
    char::from_u32(code).ok_or_else(|| format!("escape U+{code:X} is not a character"))
}

// ---- parsing ----

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// command ('|' command)*
    fn pipeline(&mut self, depth: usize) -> Res<Vec<Node>> {
        let mut commands = vec![self.command(depth)?];
        while self.peek() == Some(&Token::Pipe) {
            self.pos += 1;
            commands.push(self.command(depth)?);
        }
        Ok(commands)
    }

    /// A function and its arguments, or a single operand.
    fn command(&mut self, depth: usize) -> Res<Node> {
        let mut words = Vec::new();
        while !matches!(self.peek(), None | Some(Token::Pipe | Token::Close)) {
            words.push(self.operand(depth)?);
        }
        let mut words = words.into_iter();
        match words.next() {
            None => Err("missing value in action".into()),
            Some(Node::Call(name, _)) => Ok(Node::Call(name, words.collect())),
            Some(_) if words.len() > 0 => Err("can't give arguments to a non-function".into()),
            Some(node) => Ok(node),
        }
    }

    fn operand(&mut self, depth: usize) -> Res<Node> {
        let token = self.peek().cloned().ok_or("missing value in action")?;
        self.pos += 1;
        match token {
            Token::Field(name) => Ok(Node::Field(name)),
            Token::Lit(v) => Ok(Node::Lit(v)),
            Token::Ident(name) => Ok(Node::Call(name, Vec::new())),
            Token::Open => {
                if depth >= MAX_NESTING {
                    return Err(format!("parentheses nested deeper than {MAX_NESTING}"));
                }
                let inner = self.pipeline(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err("unclosed \"(\"".into());
                }
                self.pos += 1;
                Ok(Node::Pipeline(inner))
            }
            Token::Pipe | Token::Close => Err(format!("unexpected {token:?} in action")),
        }
    }
}

// ---- evaluation ----

fn eval_pipeline(commands: &[Node], props: &Props<'_>) -> Res<Value> {
    let mut piped: Option<Value> = None;
    for command in commands {
        piped = Some(match command {
            Node::Call(name, args) => {
                let mut values = args.iter().map(|a| eval_node(a, props)).collect::<Res<Vec<_>>>()?;
                values.extend(piped.take());
                call(name, values)?
            }
            _ if piped.is_some() => {
                return Err("can't pipe a value into a non-function".into());
            }
            node => eval_node(node, props)?,
        });
    }
    piped.ok_or_else(|| "missing value in action".into())
}

fn eval_node(node: &Node, props: &Props<'_>) -> Res<Value> {
    match node {
        Node::Field(name) => field_value(name, props).map(|v| Value::Str(v.to_owned())),
        Node::Lit(v) => Ok(v.clone()),
        Node::Call(name, args) => {
            let values = args.iter().map(|a| eval_node(a, props)).collect::<Res<Vec<_>>>()?;
            call(name, values)
        }
        Node::Pipeline(commands) => eval_pipeline(commands, props),
    }
}

fn field_value<'p>(name: &str, props: &Props<'p>) -> Res<&'p str> {
    props
        .fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("unknown field .{name} (available: {})", props.names()))
}

fn call(name: &str, args: Vec<Value>) -> Res<Value> {
    let want = match name {
        "field" | "substring" => 3,
        "contains" => 2,
        _ => 1,
    };
    if args.len() != want {
        return Err(format!(
            "wrong number of arguments for {name}: want {want}, got {}",
            args.len()
        ));
    }
    let mut args = args.into_iter();
    let mut next = |n: usize| (n, args.next().unwrap_or(Value::Bool(false)));
    match name {
        "field" => {
            let delim = string(name, next(1))?;
            let index = int(name, next(2))?;
            field(&delim, index, &string(name, next(3))?)
        }
        "substring" => {
            let start = int(name, next(1))?;
            let end = int(name, next(2))?;
            substring(start, end, &string(name, next(3))?)
        }
        "contains" => {
            let needle = string(name, next(1))?;
            let haystack = string(name, next(2))?;
            Ok(Value::Bool(haystack.contains(&needle)))
        }
        "toUpper" => Ok(Value::Str(simple_case(&string(name, next(1))?, char::to_uppercase))),
        _ => Ok(Value::Str(simple_case(&string(name, next(1))?, char::to_lowercase))),
    }
}

fn string(func: &str, (n, v): (usize, Value)) -> Res<String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "argument {n} of {func} must be a string, got {} {:?}",
            other.kind(),
            other.into_text()
        )),
    }
}

fn int(func: &str, (n, v): (usize, Value)) -> Res<i64> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(format!(
            "argument {n} of {func} must be an integer, got {} {:?}",
            other.kind(),
            other.into_text()
        )),
    }
}

/// Go's `field`: split by `delim` and take word `index` (from 0). An empty delimiter splits
/// into characters, as Go's strings.Split does.
fn field(delim: &str, index: i64, s: &str) -> Res<Value> {
    let words: Vec<&str> = if delim.is_empty() {
        s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect()
    } else {
        s.split(delim).collect()
    };
    usize::try_from(index)
        .ok()
        .and_then(|i| words.get(i))
        .map(|w| Value::Str((*w).to_owned()))
        .ok_or_else(|| {
            format!(
                "field: index {index} is out of range for {} word(s) of {:?} split by {delim:?}",
                words.len(),
                s
            )
        })
}

/// Go's `substring`, byte offsets: a negative start means from 0; a negative or too large
/// end means to the end; anything Go would panic on is an error.
fn substring(start: i64, end: i64, s: &str) -> Res<Value> {
    let len = i64::try_from(s.len()).unwrap_or(i64::MAX);
    let (from, to) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    let range = usize::try_from(from)
        .ok()
        .zip(usize::try_from(to).ok())
        .filter(|(a, b)| a <= b);
    let Some((a, b)) = range else {
        return Err(format!(
            "substring: {start}..{end} is out of range for {s:?} ({len} bytes)"
        ));
    };
    s.get(a..b)
        .map(|sub| Value::Str(sub.to_owned()))
        .ok_or_else(|| format!("substring: {start}..{end} is out of range or splits a character of {s:?}"))
}

/// Per-character case mapping that keeps characters whose mapping is not a single
/// character (Go's unicode.ToUpper leaves "ß" alone; Rust would make "SS").
fn simple_case<I: Iterator<Item = char> + ExactSizeIterator>(s: &str, map: impl Fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut mapped = map(c);
            match (mapped.len(), mapped.next()) {
                (1, Some(m)) => m,
                _ => c,
            }
        })
        .collect()
}

#[cfg(test)]
fn render_for_test(src: &str, ns: &str) -> Res<String> {
    render(
        src,
        &Props {
            fields: &[("PVCName", "data-db-0"), ("PVCNamespace", ns), ("PVName", "pvc-1234")],
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::params::{parse_create_params, parse_modify_params};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn render(src: &str) -> std::result::Result<String, String> {
        render_for_test(src, "ns-prod-abcdef")
    }

    #[test]
    fn template_functions() {
        let cases = [
            ("{{ .PVCNamespace }}", "ns-prod-abcdef"),
            ("{{ .PVCName }}/{{ .PVName }}", "data-db-0/pvc-1234"),
            ("{{ .PVCNamespace | contains \"prod\" }}", "true"),
            ("{{ .PVCNamespace | contains \"dev\" }}", "false"),
            ("{{ contains \"prod\" .PVCNamespace }}", "true"),
            ("{{ .PVCNamespace | field \"-\" 2 | toUpper }}", "ABCDEF"),
            ("{{ .PVCNamespace | field \"-\" 0 }}", "ns"),
            ("{{ field \"-\" 1 .PVCNamespace }}", "prod"),
            ("{{ field \"\" 1 \"añb\" }}", "ñ"),
            ("{{ .PVCNamespace | substring 3 7 }}", "prod"),
            ("{{ substring 0 2 .PVCName }}", "da"),
            ("{{ .PVCNamespace | substring -1 2 }}", "ns"),
            ("{{ .PVCNamespace | substring 8 100 }}", "abcdef"),
            ("{{ .PVCNamespace | substring 8 -1 }}", "abcdef"),
            ("{{ toUpper .PVCName }}", "DATA-DB-0"),
            ("{{ \"MiXeD\" | toLower }}", "mixed"),
            ("{{ toUpper \"straße\" }}", "STRAßE"),
            ("{{ toUpper (field \"-\" 1 .PVCNamespace) }}", "PROD"),
            ("{{ 42 }}-{{ -7 }}-{{ true }}", "42--7-true"),
            ("{{ `raw \"q\"` }}", "raw \"q\""),
            ("{{ \"a}}b\" }}", "a}}b"),
            ("{{ \"tab\\there\\u00e9\" }}", "tab\there\u{e9}"),
            ("a  {{- .PVName -}}  b", "apvc-1234b"),
            ("a {{- \"x\" }} b", "ax b"),
            ("{{/* note */}}x{{- /* c */ -}} y", "xy"),
            ("plain text }} here", "plain text }} here"),
            ("", ""),
        ];
        for (src, want) in cases {
            assert_eq!(render(src).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn template_errors() {
        let cases = [
            ("{{ printf \"%s\" .PVCName }}", "not allowed"),
            ("{{ call .PVCName }}", "not allowed"),
            ("{{ index .PVCName 1 }}", "not allowed"),
            ("{{ html .PVCName }}", "not allowed"),
            ("{{ len .PVCName }}", "not allowed"),
            ("{{ .Namespace }}", "unknown field"),
            ("{{ .pvcName }}", "unknown field"),
            ("{{ .PVCName.Foo }}", "no fields"),
            ("{{ . }}", "alone"),
            ("{{ $x := 1 }}", "variables"),
            ("{{ if true }}x{{ end }}", "not supported"),
            ("{{ .PVCName", "unclosed"),
            ("{{ \"abc }}", "unterminated"),
            ("{{ }}", "missing value"),
            ("{{ .PVCName | }}", "missing value"),
            ("{{ field \"-\" 9 .PVCNamespace }}", "out of range"),
            ("{{ field \"-\" -1 .PVCNamespace }}", "out of range"),
            ("{{ field \"-\" \"1\" .PVCNamespace }}", "must be an integer"),
            ("{{ field 1 \"-\" .PVCNamespace }}", "must be a string"),
            ("{{ toUpper }}", "wrong number"),
            ("{{ toUpper \"a\" \"b\" }}", "wrong number"),
            ("{{ contains \"a\" }}", "wrong number"),
            ("{{ substring 5 2 .PVCName }}", "out of range"),
            ("{{ substring 100 200 .PVCName }}", "out of range"),
            ("{{ substring -1 100 .PVCName }}", "out of range"),
            ("{{ substring 0 1 \"ñ\" }}", "splits"),
            ("{{ .PVCName | .PVName }}", "non-function"),
            ("{{ .PVCName \"x\" }}", "non-function"),
            ("{{ 0x10 }}", "unsupported number"),
            ("{{ 99999999999999999999 }}", "out of range"),
            ("{{ (toUpper \"a\" }}", "unclosed"),
            ("{{ toUpper \"a\") }}", "unexpected"),
            ("{{ 'a' }}", "character"),
            ("{{ \"\\q\" }}", "escape"),
            ("{{/* open", "unclosed comment"),
            ("{{/* x */ y }}", "comment ends"),
        ];
        for (src, want) in cases {
            let err = render(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
        }
        let deep = format!("{{{{ {}\"a\"{} }}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(render(&deep).unwrap_err().contains("nested"));
        let ok = format!("{{{{ {}\"a\"{} }}}}", "(".repeat(16), ")".repeat(16));
        assert_eq!(render(&ok).as_deref(), Ok("a"));
    }

    #[test]
    fn fuzz_templates_and_values() {
        const PIECES: [&str; 24] = [
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            "|",
            "(",
            ")",
            "\"",
            "`",
            "'",
            "\\",
            ".PVCName",
            ".",
            "field",
            "substring",
            "toUpper",
            "contains",
            "-1",
            "2",
            "\"-\"",
            "ü",
            "/*",
            "*/",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap_or(0)
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let src: String = (0..len).map(|_| PIECES[next() % PIECES.len()]).collect();
            let _ = render(&src);
            let params = map(&[("tagSpecification_1", &format!("k={src}")), ("iops", &src)]);
            let _ = parse_create_params(&params);
            let _ = parse_modify_params(&map(&[("tagSpecification_1", &format!("k={src}"))]));
        }
    }
}
