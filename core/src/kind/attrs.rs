//! Typed access to a node's attributes, with spans: integer expressions are evaluated
//! over the flow's variables, unknown attributes are errors (with did-you-mean).

use std::collections::BTreeMap;

use crate::dsl::expr;
use crate::error::{did_you_mean, Error, Result, SourceFile, Span};

/// One attribute as written.
#[derive(Clone, Debug)]
pub struct Attr {
    /// Name.
    pub name: String,
    /// Value after template substitution.
    pub value: ron::Value,
    /// Span of the value.
    pub span: Span,
    /// Span of the name, where known.
    pub key_span: Option<Span>,
}

/// The attributes of one node, read by a block kind's `configure`.
pub struct Attrs<'a> {
    items: Vec<Attr>,
    read: Vec<String>,
    vars: &'a BTreeMap<String, i64>,
    src: &'a SourceFile,
    whole: Span,
    kind: String,
}

impl<'a> Attrs<'a> {
    /// Attributes of a node of `kind` whose attribute block is at `whole`.
    pub fn new(
        items: Vec<Attr>,
        vars: &'a BTreeMap<String, i64>,
        src: &'a SourceFile,
        whole: Span,
        kind: &str,
    ) -> Self {
        Self { items, read: Vec::new(), vars, src, whole, kind: kind.to_string() }
    }

    fn find(&mut self, name: &str) -> Option<Attr> {
        self.read.push(name.to_string());
        self.items.iter().find(|a| a.name == name).cloned()
    }

    /// An error about attribute `a`.
    pub fn error_at(&self, a: &Attr, message: impl Into<String>) -> Error {
        self.src.error("graph::bad_attribute", a.span, message)
    }

    /// An error about the node's attributes as a whole.
    pub fn error(&self, message: impl Into<String>) -> Error {
        self.src.error("graph::bad_attribute", self.whole, message)
    }

    fn int_of(&self, a: &Attr) -> Result<i64> {
        match &a.value {
            ron::Value::Number(n) => match n.into_f64() {
                f if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                _ => Err(self.error_at(a, format!("`{}` must be an integer", a.name))),
            },
            ron::Value::String(s) => {
                let names = || self.vars.keys().cloned().collect();
                expr::eval(s, &|n| self.vars.get(n).copied(), &names).map_err(|e| {
                    let start = a.span.offset() + 1 + e.range.0;
                    let len = (e.range.1 - e.range.0).max(1);
                    let mut err = self.src.error("graph::bad_expression", (start, len).into(), e.message);
                    if let Some(h) = e.help {
                        err = err.with_help(h);
                    }
                    err
                })
            }
            _ => Err(self.error_at(a, format!("`{}` must be an integer or an expression string", a.name))),
        }
    }

    /// A required positive dimension.
    pub fn dim(&mut self, name: &str) -> Result<usize> {
        match self.find(name) {
            Some(a) => self.dim_of(&a),
            None => Err(self.error(format!("`{}` needs attribute `{name}`", self.kind))),
        }
    }

    fn dim_of(&self, a: &Attr) -> Result<usize> {
        let v = self.int_of(a)?;
        if v <= 0 || v > (1 << 40) {
            return Err(self.error_at(a, format!("`{}` must be a positive size, got {v}", a.name)));
        }
        Ok(v as usize)
    }

    /// An optional non-negative integer with a default.
    pub fn uint_or(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.find(name) {
            Some(a) => {
                let v = self.int_of(&a)?;
                if !(0..=(1 << 40)).contains(&v) {
                    return Err(self.error_at(&a, format!("`{name}` must be >= 0, got {v}")));
                }
                Ok(v as usize)
            }
            None => Ok(default),
        }
    }

    /// An optional positive dimension with a default.
    pub fn dim_or(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.find(name) {
            Some(a) => self.dim_of(&a),
            None => Ok(default),
        }
    }

    /// An optional signed integer with a default.
    pub fn int_or(&mut self, name: &str, default: i64) -> Result<i64> {
        match self.find(name) {
            Some(a) => self.int_of(&a),
            None => Ok(default),
        }
    }

    /// An optional list of integers (e.g. a reshape target); `None` if absent.
    pub fn dims(&mut self, name: &str) -> Result<Option<Vec<usize>>> {
        let Some(a) = self.find(name) else {
            return Ok(None);
        };
        let ron::Value::Seq(items) = &a.value else {
            return Err(self.error_at(&a, format!("`{name}` must be a list of sizes")));
        };
        items
            .iter()
            .map(|v| {
                self.dim_of(&Attr { name: name.to_string(), value: v.clone(), span: a.span, key_span: a.key_span })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// A size per axis `(rows, columns)`: one integer for both (`kernel: 3`) or a list of
    /// two (`kernel: [1, 7]`); `default` when absent. Each must be at least `min`.
    pub fn pair_or(&mut self, name: &str, default: (usize, usize), min: usize) -> Result<(usize, usize)> {
        let Some(a) = self.find(name) else {
            return Ok(default);
        };
        let one = |v: &ron::Value| -> Result<usize> {
            let v =
                self.int_of(&Attr { name: name.to_string(), value: v.clone(), span: a.span, key_span: a.key_span })?;
            if v < min as i64 || v > (1 << 40) {
                return Err(self.error_at(&a, format!("`{name}` must be at least {min}, got {v}")));
            }
            Ok(v as usize)
        };
        match &a.value {
            ron::Value::Seq(items) if items.len() == 2 => Ok((one(&items[0])?, one(&items[1])?)),
            ron::Value::Seq(_) => Err(self.error_at(&a, format!("`{name}` must be one size or two: [rows, columns]"))),
            v => one(v).map(|n| (n, n)),
        }
    }

    /// An optional float with a default.
    pub fn float_or(&mut self, name: &str, default: f64) -> Result<f64> {
        match self.find(name) {
            Some(a) => match &a.value {
                ron::Value::Number(n) if n.into_f64().is_finite() => Ok(n.into_f64()),
                _ => Err(self.error_at(&a, format!("`{name}` must be a finite number"))),
            },
            None => Ok(default),
        }
    }

    /// An optional boolean with a default.
    pub fn bool_or(&mut self, name: &str, default: bool) -> Result<bool> {
        match self.find(name) {
            Some(a) => match &a.value {
                ron::Value::Bool(b) => Ok(*b),
                _ => Err(self.error_at(&a, format!("`{name}` must be `true` or `false`"))),
            },
            None => Ok(default),
        }
    }

    /// An optional string that must be one of `choices` (first is the default).
    pub fn choice(&mut self, name: &str, choices: &[&'static str]) -> Result<&'static str> {
        match self.find(name) {
            Some(a) => {
                let s = match &a.value {
                    ron::Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                match choices.iter().find(|c| **c == s) {
                    Some(c) => Ok(c),
                    None => {
                        let mut e = self.error_at(&a, format!("`{name}` must be one of: {}", choices.join(", ")));
                        if let Some(h) = did_you_mean(&s, choices.iter().copied()) {
                            e = e.with_help(h);
                        }
                        Err(e)
                    }
                }
            }
            None => Ok(choices[0]),
        }
    }

    /// An attribute as an integer (a number, or an expression over the flow's variables)
    /// with the usual spanned errors; for kinds (plugins) that read attributes themselves.
    pub fn int_value(&self, a: &Attr) -> Result<i64> {
        self.int_of(a)
    }

    /// The file the attributes are written in.
    pub fn source(&self) -> &SourceFile {
        self.src
    }

    /// The span of the whole attribute block.
    pub fn span(&self) -> Span {
        self.whole
    }

    /// Every attribute, for kinds (plugins) that read attributes themselves.
    pub fn take_all(&mut self) -> Vec<Attr> {
        self.read.extend(self.items.iter().map(|a| a.name.clone()));
        std::mem::take(&mut self.items)
    }

    /// Fail on any attribute the kind did not read.
    pub fn finish(self) -> Result<()> {
        for a in &self.items {
            if !self.read.contains(&a.name) {
                let mut e = self.src.error(
                    "graph::unknown_attribute",
                    a.key_span.unwrap_or(a.span),
                    format!("`{}` has no attribute `{}`", self.kind, a.name),
                );
                e = match did_you_mean(&a.name, self.read.iter().map(String::as_str)) {
                    Some(h) => e.with_help(h),
                    None if self.read.is_empty() => e.with_help(format!("`{}` takes no attributes", self.kind)),
                    None => e.with_help(format!("known attributes: {}", self.read.join(", "))),
                };
                return Err(e);
            }
        }
        Ok(())
    }
}
