//! The error a plugin returns: a message, and the attribute it is about when there is one.

use std::fmt;

/// A plugin error. The host shows it as a diagnostic naming the plugin and the kind, and
/// points at the attribute in the graph file when [`Error::attribute`] is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
    attribute: Option<String>,
}

/// Result with the plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), attribute: None }
    }

    /// An error about attribute `name`.
    pub fn at(name: &str, message: impl Into<String>) -> Self {
        Self { message: message.into(), attribute: Some(name.to_string()) }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The attribute the error is about, if any.
    pub fn attribute(&self) -> Option<&str> {
        self.attribute.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}
