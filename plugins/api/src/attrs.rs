//! A node's attributes as the plugin sees them: parsed from the RON text the host sends,
//! with typed getters. Integer expressions over the graph's variables (`"df_dim * 8"`)
//! are evaluated by the host, which also points at the attribute when one is wrong.

use serde::de::DeserializeOwned;

use crate::abi::{ConfigureV1, Str, OK};
use crate::error::{Error, Result};

/// The attributes of one node (or of a loss or sampler), read by a kind's `configure`.
/// Every attribute must be read: after `configure` the export wrapper calls
/// [`Attrs::finish`], which refuses the ones nobody asked for.
pub struct Attrs<'c> {
    items: Vec<(String, ron::Value)>,
    read: Vec<String>,
    cfg: Option<&'c ConfigureV1>,
}

fn kind_of(v: &ron::Value) -> &'static str {
    match v {
        ron::Value::Bool(_) => "a boolean",
        ron::Value::Char(_) => "a character",
        ron::Value::Map(_) => "a map",
        ron::Value::Number(_) => "a number",
        ron::Value::Option(_) => "an option",
        ron::Value::String(_) => "a string",
        ron::Value::Bytes(_) => "bytes",
        ron::Value::Seq(_) => "a list",
        ron::Value::Unit => "()",
    }
}

fn as_f64(v: &ron::Value) -> Option<f64> {
    match v {
        ron::Value::Number(n) => Some(n.into_f64()),
        _ => None,
    }
}

impl<'c> Attrs<'c> {
    /// Attributes from RON text: a map (`{"out": 4}`), a struct-like tuple (`(out: 4)`) or
    /// `()`. Without a host (`cfg` = `None`, e.g. in a plugin's unit tests) string
    /// expressions cannot be evaluated.
    pub fn parse(text: &str, cfg: Option<&'c ConfigureV1>) -> Result<Self> {
        let value: ron::Value =
            ron::from_str(text).map_err(|e| Error::new(format!("attributes are not valid RON: {e}")))?;
        let items = match value {
            ron::Value::Unit => Vec::new(),
            ron::Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| match k {
                    ron::Value::String(s) => Ok((s, v)),
                    other => Err(Error::new(format!("attribute names must be strings, got {}", kind_of(&other)))),
                })
                .collect::<Result<Vec<_>>>()?,
            other => return Err(Error::new(format!("attributes must be a map, got {}", kind_of(&other)))),
        };
        Ok(Self { items, read: Vec::new(), cfg })
    }

    /// The raw value of attribute `name`, marking it read.
    pub fn raw(&mut self, name: &str) -> Option<&ron::Value> {
        if !self.read.iter().any(|r| r == name) {
            self.read.push(name.to_string());
        }
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether attribute `name` is present (does not mark it read).
    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _)| n == name)
    }

    fn int_of(&self, name: &str, v: &ron::Value) -> Result<i64> {
        match v {
            ron::Value::Number(n) => {
                let f = n.into_f64();
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(f as i64)
                } else {
                    Err(Error::at(name, format!("`{name}` must be an integer")))
                }
            }
            ron::Value::String(expr) => {
                let Some(cfg) = self.cfg else {
                    return Err(Error::at(name, format!("`{name}`: expressions need the stackflow host")));
                };
                let mut out = 0i64;
                // SAFETY: `cfg` is the host's live configure context for this call.
                let st = unsafe { (cfg.eval_int)(cfg.ctx, Str::new(name), Str::new(expr), &mut out) };
                if st == OK {
                    Ok(out)
                } else {
                    Err(Error::at(name, format!("`{name}`: cannot evaluate `{expr}`")))
                }
            }
            other => Err(Error::at(
                name,
                format!("`{name}` must be an integer or an expression string, got {}", kind_of(other)),
            )),
        }
    }

    fn dim_of(&self, name: &str, v: &ron::Value) -> Result<usize> {
        let n = self.int_of(name, v)?;
        if n <= 0 || n > (1 << 40) {
            return Err(Error::at(name, format!("`{name}` must be a positive size, got {n}")));
        }
        Ok(n as usize)
    }

    /// A required positive size (a number or an expression over the graph's variables).
    pub fn dim(&mut self, name: &str) -> Result<usize> {
        match self.raw(name).cloned() {
            Some(v) => self.dim_of(name, &v),
            None => Err(Error::new(format!("needs attribute `{name}`"))),
        }
    }

    /// An optional positive size with a default.
    pub fn dim_or(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.raw(name).cloned() {
            Some(v) => self.dim_of(name, &v),
            None => Ok(default),
        }
    }

    /// An optional non-negative integer with a default.
    pub fn uint_or(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.raw(name).cloned() {
            Some(v) => {
                let n = self.int_of(name, &v)?;
                if !(0..=(1 << 40)).contains(&n) {
                    return Err(Error::at(name, format!("`{name}` must be >= 0, got {n}")));
                }
                Ok(n as usize)
            }
            None => Ok(default),
        }
    }

    /// An optional signed integer with a default.
    pub fn int_or(&mut self, name: &str, default: i64) -> Result<i64> {
        match self.raw(name).cloned() {
            Some(v) => self.int_of(name, &v),
            None => Ok(default),
        }
    }

    /// An optional list of sizes; `None` if absent.
    pub fn dims(&mut self, name: &str) -> Result<Option<Vec<usize>>> {
        let Some(v) = self.raw(name).cloned() else {
            return Ok(None);
        };
        let ron::Value::Seq(items) = v else {
            return Err(Error::at(name, format!("`{name}` must be a list of sizes")));
        };
        items.iter().map(|i| self.dim_of(name, i)).collect::<Result<Vec<_>>>().map(Some)
    }

    /// An optional finite number with a default.
    pub fn float_or(&mut self, name: &str, default: f64) -> Result<f64> {
        match self.raw(name).map(as_f64) {
            Some(Some(f)) if f.is_finite() => Ok(f),
            Some(_) => Err(Error::at(name, format!("`{name}` must be a finite number"))),
            None => Ok(default),
        }
    }

    /// An optional boolean with a default.
    pub fn bool_or(&mut self, name: &str, default: bool) -> Result<bool> {
        match self.raw(name) {
            Some(ron::Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Error::at(name, format!("`{name}` must be `true` or `false`"))),
            None => Ok(default),
        }
    }

    /// An optional string with a default.
    pub fn string_or(&mut self, name: &str, default: &str) -> Result<String> {
        match self.raw(name) {
            Some(ron::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::at(name, format!("`{name}` must be a string"))),
            None => Ok(default.to_string()),
        }
    }

    /// An optional string that must be one of `choices` (the first is the default).
    pub fn choice(&mut self, name: &str, choices: &[&'static str]) -> Result<&'static str> {
        match self.raw(name) {
            Some(ron::Value::String(s)) => choices
                .iter()
                .find(|c| **c == s.as_str())
                .copied()
                .ok_or_else(|| Error::at(name, format!("`{name}` must be one of: {}", choices.join(", ")))),
            Some(_) => Err(Error::at(name, format!("`{name}` must be one of: {}", choices.join(", ")))),
            None => Ok(choices.first().copied().unwrap_or_default()),
        }
    }

    /// Every attribute into a serde type (mark all read). Expressions are not evaluated
    /// this way: use the typed getters for sizes that may be expressions.
    pub fn deserialize<T: DeserializeOwned>(&mut self) -> Result<T> {
        let mut map = ron::Map::new();
        for (n, v) in &self.items {
            map.insert(ron::Value::String(n.clone()), v.clone());
            if !self.read.contains(n) {
                self.read.push(n.clone());
            }
        }
        ron::Value::Map(map).into_rust().map_err(|e| Error::new(format!("attributes: {e}")))
    }

    /// Fail on an attribute the kind did not read.
    pub fn finish(self) -> Result<()> {
        for (name, _) in &self.items {
            if !self.read.contains(name) {
                let known = if self.read.is_empty() {
                    "it takes no attributes".to_string()
                } else {
                    format!("known attributes: {}", self.read.join(", "))
                };
                return Err(Error::at(name, format!("unknown attribute `{name}` ({known})")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_and_unknown_attributes() {
        let mut a = Attrs::parse(r#"{"out": 4, "act": "relu", "scale": 0.5, "shape": [2, 3]}"#, None).unwrap();
        assert_eq!(a.dim("out").unwrap(), 4);
        assert_eq!(a.choice("act", &["relu", "tanh"]).unwrap(), "relu");
        assert_eq!(a.float_or("scale", 1.0).unwrap(), 0.5);
        assert_eq!(a.dims("shape").unwrap(), Some(vec![2, 3]));
        assert!(a.bool_or("bias", true).unwrap());
        a.finish().unwrap();

        let mut a = Attrs::parse("(out: 4, typo: 1)", None).unwrap();
        a.dim("out").unwrap();
        let e = a.finish().unwrap_err();
        assert_eq!(e.attribute(), Some("typo"));

        let mut a = Attrs::parse(r#"{"out": "w * 2"}"#, None).unwrap();
        assert!(a.dim("out").unwrap_err().message().contains("host"));
        let mut a = Attrs::parse("()", None).unwrap();
        assert!(a.dim("out").is_err());
        assert_eq!(a.choice("act", &["relu", "tanh"]).unwrap(), "relu");
    }
}
