//! Integer dimension expressions such as `"gf_dim * 8 * 16"` over named variables.
//!
//! Grammar: `+ - * / %`, parentheses, unary minus, integer literals, variable names and
//! `min(a, b)` / `max(a, b)`. Arithmetic is checked: overflow and division by zero are
//! errors, never panics or wrap-around.

use std::fmt;

/// An expression error with the byte range inside the expression text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// What went wrong.
    pub message: String,
    /// Byte range of the offending part, relative to the expression text.
    pub range: (usize, usize),
    /// A hint, such as a did-you-mean.
    pub help: Option<String>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;

/// Evaluate `text`, looking names up with `lookup`.
/// `names` lists the known variables for a did-you-mean hint; it is only called on an
/// unknown name, so that evaluating many expressions over many variables stays linear.
pub fn eval(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<i64>,
    names: &dyn Fn() -> Vec<String>,
) -> Result<i64, ExprError> {
    if text.len() > MAX_LEN {
        return Err(err("expression is too long", (0, text.len())));
    }
    let mut p = Parser { s: text.as_bytes(), i: 0, depth: 0, lookup, names };
    p.ws();
    if p.i == text.len() {
        return Err(err("empty expression", (0, text.len())));
    }
    let v = p.sum()?;
    p.ws();
    if p.i != text.len() {
        return Err(err(format!("unexpected `{}`", &text[p.i..].chars().next().unwrap_or(' ')), (p.i, p.i + 1)));
    }
    Ok(v)
}

/// The variable names an expression mentions (for dependency order), in order of appearance.
pub fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            cur.push(c);
        } else if !cur.is_empty() {
            if !cur.starts_with(|c: char| c.is_ascii_digit()) && cur != "min" && cur != "max" {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    out
}

fn err(message: impl Into<String>, range: (usize, usize)) -> ExprError {
    ExprError { message: message.into(), range, help: None }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    lookup: &'a dyn Fn(&str) -> Option<i64>,
    names: &'a dyn Fn() -> Vec<String>,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn overflow(&self, start: usize) -> ExprError {
        err("arithmetic overflow", (start, self.i))
    }

    fn sum(&mut self) -> Result<i64, ExprError> {
        let start = self.i;
        let mut v = self.product()?;
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(b'+') => {
                    self.i += 1;
                    let r = self.product()?;
                    v = v.checked_add(r).ok_or_else(|| self.overflow(start))?;
                }
                Some(b'-') => {
                    self.i += 1;
                    let r = self.product()?;
                    v = v.checked_sub(r).ok_or_else(|| self.overflow(start))?;
                }
                _ => return Ok(v),
            }
        }
    }

    fn product(&mut self) -> Result<i64, ExprError> {
        let start = self.i;
        let mut v = self.unary()?;
        loop {
            self.ws();
            let op = match self.s.get(self.i) {
                Some(&c @ (b'*' | b'/' | b'%')) => c,
                _ => return Ok(v),
            };
            self.i += 1;
            let rstart = self.i;
            let r = self.unary()?;
            v = match op {
                b'*' => v.checked_mul(r).ok_or_else(|| self.overflow(start))?,
                _ if r == 0 => return Err(err("division by zero", (rstart, self.i))),
                b'/' => v.checked_div(r).ok_or_else(|| self.overflow(start))?,
                _ => v.checked_rem(r).ok_or_else(|| self.overflow(start))?,
            };
        }
    }

    fn unary(&mut self) -> Result<i64, ExprError> {
        self.ws();
        if self.s.get(self.i) == Some(&b'-') {
            let start = self.i;
            self.i += 1;
            let v = self.unary()?;
            return v.checked_neg().ok_or_else(|| self.overflow(start));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<i64, ExprError> {
        self.ws();
        let start = self.i;
        match self.s.get(self.i) {
            None => Err(err("expression ends early", (self.i, self.i))),
            Some(b'(') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(err("expression is nested too deeply", (start, start + 1)));
                }
                self.i += 1;
                let v = self.sum()?;
                self.ws();
                if self.s.get(self.i) != Some(&b')') {
                    return Err(err("missing `)`", (start, self.i)));
                }
                self.i += 1;
                self.depth -= 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() => {
                while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'_') {
                    self.i += 1;
                }
                let t: String = self.text(start).chars().filter(|&c| c != '_').collect();
                t.parse::<i64>().map_err(|_| err("number is too large", (start, self.i)))
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
                    self.i += 1;
                }
                let name = self.text(start).to_string();
                if name == "min" || name == "max" {
                    return self.call(&name, start);
                }
                (self.lookup)(&name).ok_or_else(|| {
                    let names = (self.names)();
                    ExprError {
                        message: format!("unknown variable `{name}`"),
                        range: (start, self.i),
                        help: crate::error::did_you_mean(&name, names.iter().map(String::as_str))
                            .or_else(|| Some(format!("known variables: {}", names.join(", ")))),
                    }
                })
            }
            Some(_) => {
                Err(err(format!("unexpected `{}`", self.text(start).chars().next().unwrap_or(' ')), (start, start + 1)))
            }
        }
    }

    fn call(&mut self, name: &str, start: usize) -> Result<i64, ExprError> {
        self.ws();
        if self.s.get(self.i) != Some(&b'(') {
            return Err(err(format!("`{name}` needs arguments: `{name}(a, b)`"), (start, self.i)));
        }
        self.i += 1;
        let a = self.sum()?;
        self.ws();
        if self.s.get(self.i) != Some(&b',') {
            return Err(err(format!("`{name}` takes two arguments"), (start, self.i)));
        }
        self.i += 1;
        let b = self.sum()?;
        self.ws();
        if self.s.get(self.i) != Some(&b')') {
            return Err(err("missing `)`", (start, self.i)));
        }
        self.i += 1;
        Ok(if name == "min" { a.min(b) } else { a.max(b) })
    }

    fn text(&self, start: usize) -> &str {
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<i64, ExprError> {
        let look = |n: &str| match n {
            "gf_dim" => Some(128),
            "z" => Some(100),
            _ => None,
        };
        eval(s, &look, &|| vec!["gf_dim".into(), "z".into()])
    }

    #[test]
    fn evaluates_arithmetic() {
        assert_eq!(ev("gf_dim * 8 * 16"), Ok(16384));
        assert_eq!(ev("z + gf_dim / 2 - 1"), Ok(163));
        assert_eq!(ev("-(z % 7) + max(2, 3) * min(4, 5)"), Ok(10));
        assert_eq!(ev(" 1_000 "), Ok(1000));
    }

    #[test]
    fn reports_errors_with_ranges() {
        let e = ev("gf_dm * 2").unwrap_err();
        assert_eq!(e.range, (0, 5));
        assert_eq!(e.help.as_deref(), Some("did you mean `gf_dim`?"));
        assert_eq!(ev("4 / (z - 100)").unwrap_err().message, "division by zero");
        assert_eq!(ev("9223372036854775807 * 2").unwrap_err().message, "arithmetic overflow");
        assert!(ev("(1 + 2").is_err());
        assert!(ev("1 +").is_err());
        assert!(ev("").is_err());
        assert!(ev("1 $ 2").is_err());
        assert!(ev(&"(".repeat(1000)).is_err());
        assert_eq!(names_in("gf_dim * 8 + max(z, 3)"), vec!["gf_dim", "z"]);
    }
}
