//! A parser for the Python literals Barman writes with `repr()` into backup.info
//! (`backup_label`, `copy_stats`, `tablespaces`, `included_files`): strings with escapes,
//! numbers, None/True/False, tuples, lists and dicts. The subset `ast.literal_eval` reads back.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Keys are kept as their string form (Barman's dicts have string keys).
    Dict(BTreeMap<String, PyValue>),
}

impl PyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Python literal at byte {at}: {what}")]
pub struct LiteralError {
    pub at: usize,
    pub what: &'static str,
}

pub fn parse(text: &str) -> Result<PyValue, LiteralError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> LiteralError {
        LiteralError { at: self.i, what }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<PyValue, LiteralError> {
        self.ws();
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'\'' | b'"') => Ok(PyValue::Str(self.string()?)),
            Some(b'[') => Ok(PyValue::List(self.seq(b']')?.0)),
            Some(b'(') => {
                let (items, trailing_comma) = self.seq(b')')?;
                // `(x)` is just x; `(x,)` is a tuple.
                if items.len() == 1 && !trailing_comma {
                    Ok(items.into_iter().next().unwrap_or(PyValue::None))
                } else {
                    Ok(PyValue::Tuple(items))
                }
            }
            Some(b'{') => self.dict(),
            Some(b'N') if self.eat("None") => Ok(PyValue::None),
            Some(b'T') if self.eat("True") => Ok(PyValue::Bool(true)),
            Some(b'F') if self.eat("False") => Ok(PyValue::Bool(false)),
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() || c == b'.' => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn seq(&mut self, close: u8) -> Result<(Vec<PyValue>, bool), LiteralError> {
        self.i += 1;
        let mut items = Vec::new();
        let mut trailing_comma = false;
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((items, trailing_comma));
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    trailing_comma = true;
                }
                Some(c) if c == close => trailing_comma = false,
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn dict(&mut self) -> Result<PyValue, LiteralError> {
        self.i += 1;
        let mut map = BTreeMap::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(PyValue::Dict(map));
            }
            let key = match self.value()? {
                PyValue::Str(s) => s,
                PyValue::Int(n) => n.to_string(),
                _ => return Err(self.err("dict keys must be strings or integers")),
            };
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            let v = self.value()?;
            map.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<PyValue, LiteralError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'_') {
                self.i += 1;
            } else {
                break;
            }
        }
        let tok = &self.text[start..self.i];
        if let Ok(n) = tok.parse::<i64>() {
            return Ok(PyValue::Int(n));
        }
        tok.parse::<f64>()
            .map(PyValue::Float)
            .map_err(|_| LiteralError {
                at: start,
                what: "not a number",
            })
    }

    fn string(&mut self) -> Result<String, LiteralError> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.i..];
            let mut chars = rest.chars();
            let c = chars
                .next()
                .ok_or_else(|| self.err("unterminated string"))?;
            self.i += c.len_utf8();
            if c as u32 == quote as u32 {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
            self.i += 1;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'x' => out.push(self.hex_escape(2)?),
                b'u' => out.push(self.hex_escape(4)?),
                b'U' => out.push(self.hex_escape(8)?),
                b'\n' => {}
                _ => return Err(self.err("unknown escape")),
            }
        }
    }

    fn hex_escape(&mut self, n: usize) -> Result<char, LiteralError> {
        let digits = self
            .text
            .get(self.i..self.i + n)
            .ok_or_else(|| self.err("short hex escape"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.err("bad hex escape"))?;
        self.i += n;
        char::from_u32(code).ok_or_else(|| self.err("escape is not a character"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_with_escapes_as_python_repr_writes_them() {
        let v = parse(r"'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nLABEL: Barman backup pg 20261125T030939\n'")
            .expect("repr of backup_label");
        let s = v.as_str().expect("a string");
        assert!(s.starts_with("START WAL LOCATION: 0/2000028"));
        assert_eq!(s.lines().count(), 3);
        assert_eq!(
            parse(r#""it's""#).expect("double quoted"),
            PyValue::Str("it's".into())
        );
        assert_eq!(
            parse(r"'caf\xe9 \u20ac'").expect("escapes"),
            PyValue::Str("café €".into())
        );
    }

    #[test]
    fn containers_and_scalars() {
        let v = parse(
            "{'copy_time': 0.53, 'total_time': 1.2, 'analysis_time': 0, 'n': None, 'ok': True}",
        )
        .expect("dict");
        let PyValue::Dict(m) = v else {
            panic!("not a dict")
        };
        assert_eq!(m["copy_time"], PyValue::Float(0.53));
        assert_eq!(m["analysis_time"], PyValue::Int(0));
        assert_eq!(m["n"], PyValue::None);
        assert_eq!(m["ok"], PyValue::Bool(true));
        assert_eq!(
            parse("[('tbs1', 16387, '/srv/tbs1')]").expect("tablespaces"),
            PyValue::List(vec![PyValue::Tuple(vec![
                PyValue::Str("tbs1".into()),
                PyValue::Int(16387),
                PyValue::Str("/srv/tbs1".into()),
            ])])
        );
        assert_eq!(
            parse("(1,)").expect("1-tuple"),
            PyValue::Tuple(vec![PyValue::Int(1)])
        );
        assert_eq!(parse("(1)").expect("parens"), PyValue::Int(1));
        assert_eq!(parse("-3.5e2").expect("float"), PyValue::Float(-350.0));
    }

    #[test]
    fn rejects_what_literal_eval_rejects() {
        assert!(parse("'open").is_err());
        assert!(parse("[1, 2").is_err());
        assert!(parse("__import__('os')").is_err());
        assert!(parse("1 2").is_err());
        assert!(parse("{1: }").is_err());
    }
}
