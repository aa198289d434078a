//! Llama 4's pythonic calls (vLLM's `pythonic`/`llama4_pythonic`): the
//! output is a Python list of calls with keyword arguments,
//! `[get_weather(city="Paris", days=3), now()]`, optionally between
//! `<|python_start|>` and `<|python_end|>`.
//!
//! Hand-written: a recursive-descent reader of the Python literals a call
//! can hold (strings, numbers, `True`/`False`/`None`, lists, dicts), since
//! no small crate parses Python expressions.

use serde_json::{Map, Number, Value};

use super::{Parsed, ToolCall};

/// Deepest nesting of lists and dicts read (a bound on recursion).
const MAX_DEPTH: usize = 64;

pub(super) fn parse(text: &str) -> Option<Parsed> {
    let body = text.trim();
    let body = body.strip_prefix("<|python_start|>").unwrap_or(body);
    let body = body.strip_suffix("<|python_end|>").unwrap_or(body).trim();
    let mut r = Reader { s: body, at: 0 };
    r.expect('[')?;
    let mut calls = Vec::new();
    r.items(']', |r| {
        calls.push(r.call()?);
        Some(())
    })?;
    r.blank();
    (r.at == r.s.len() && !calls.is_empty()).then(|| Parsed {
        content: String::new(),
        calls,
    })
}

struct Reader<'a> {
    s: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn blank(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.blank();
        self.eat(c).then_some(())
    }

    fn ident(&mut self) -> Option<&str> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    /// `item, item, ...` up to `close` (a trailing comma allowed), the
    /// opening bracket already read.
    fn items(&mut self, close: char, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        let mut first = true;
        loop {
            self.blank();
            if self.eat(close) {
                return Some(());
            }
            if !first {
                self.expect(',')?;
                self.blank();
                if self.eat(close) {
                    return Some(());
                }
            }
            first = false;
            item(self)?;
        }
    }

    fn call(&mut self) -> Option<ToolCall> {
        let name = self.ident()?.to_owned();
        self.expect('(')?;
        let mut arguments = Map::new();
        self.items(')', |r| {
            let key = r.ident()?.to_owned();
            r.expect('=')?;
            r.blank();
            arguments.insert(key, r.value(0)?);
            Some(())
        })?;
        Some(ToolCall { name, arguments })
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.blank();
        match self.peek()? {
            '"' | '\'' => self.string().map(Value::String),
            '[' | '(' => {
                let close = if self.eat('[') {
                    ']'
                } else {
                    self.at += 1;
                    ')'
                };
                let mut items = Vec::new();
                self.items(close, |r| {
                    items.push(r.value(depth + 1)?);
                    Some(())
                })?;
                Some(Value::Array(items))
            }
            '{' => {
                self.at += 1;
                let mut map = Map::new();
                self.items('}', |r| {
                    let key = match r.value(depth + 1)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    r.expect(':')?;
                    map.insert(key, r.value(depth + 1)?);
                    Some(())
                })?;
                Some(Value::Object(map))
            }
            _ => {
                let word = self.word();
                match word {
                    "True" | "true" => Some(Value::Bool(true)),
                    "False" | "false" => Some(Value::Bool(false)),
                    "None" | "null" => Some(Value::Null),
                    _ => number(word),
                }
            }
        }
    }

    /// A run of characters up to a delimiter (a number or a keyword).
    fn word(&mut self) -> &str {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !",)]}:".contains(c))
        {
            self.at += self.peek().map_or(1, char::len_utf8);
        }
        &self.s[start..self.at]
    }

    /// A quoted Python string with the common escapes.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.s[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.at += i + 1;
                    return Some(out);
                }
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        None
    }
}

fn number(word: &str) -> Option<Value> {
    if let Ok(i) = word.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    let f: f64 = word.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}
