//! The one error type of stackflow: a diagnostic with a code, the file it is about,
//! labelled spans and a help line, rendered by miette in the CLI.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// A byte range in a source file.
pub type Span = SourceSpan;

/// A named text the user gave us (a graph file, a `--set` flag, a plugin's attribute string).
///
/// A flow composed of several files (`extends`, `include`) is one source whose text is
/// the files one after another: a span is a position in that joined text, and
/// diagnostics name and number the lines of the file the span falls in.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// What the user calls it: a path, or `--set` for command-line values.
    pub name: String,
    /// The full text (of every file, for a joined source).
    pub text: Arc<str>,
    /// For a joined source, each file's name and where its text starts.
    files: Option<Arc<[(String, usize)]>>,
}

impl SourceFile {
    /// A source from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), text: text.into(), files: None }
    }

    /// One source of several files, named after the first; the returned offsets are where
    /// each file's text starts in the joined text.
    pub fn joined(files: &[SourceFile]) -> (Self, Vec<usize>) {
        let mut text = String::new();
        let mut parts = Vec::new();
        for f in files {
            parts.push((f.name.clone(), text.len()));
            text.push_str(&f.text);
            text.push('\n');
        }
        let starts = parts.iter().map(|(_, s)| *s).collect();
        let name = files.first().map_or_else(String::new, |f| f.name.clone());
        (Self { name, text: text.into(), files: Some(parts.into()) }, starts)
    }

    /// The files of this source: name, start offset and text.
    pub fn files(&self) -> Vec<(&str, usize, &str)> {
        match &self.files {
            None => vec![(self.name.as_str(), 0, &*self.text)],
            Some(parts) => parts
                .iter()
                .enumerate()
                .map(|(i, (name, start))| {
                    let end = parts.get(i + 1).map_or(self.text.len(), |p| p.1);
                    (name.as_str(), *start, &self.text[*start..end])
                })
                .collect(),
        }
    }

    /// The file an offset falls in: its name, start offset and text.
    pub fn file_at(&self, offset: usize) -> (&str, usize, &str) {
        let files = self.files();
        let i = files.iter().rposition(|(_, start, _)| *start <= offset).unwrap_or(0);
        files[i]
    }

    /// `file:line` of an offset (1-based line), as `info` shows where things come from.
    pub fn place(&self, offset: usize) -> String {
        let (name, start, text) = self.file_at(offset);
        let at = (offset - start).min(text.len());
        format!("{name}:{}", text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1)
    }

    /// A spanned input error in this file.
    pub fn error(&self, code: &'static str, span: Span, message: impl Into<String>) -> Error {
        Error::input(code, message).with_source(self).with_label(span, None::<String>)
    }

    /// The span of the whole text (used when nothing more precise is known).
    pub fn whole(&self) -> Span {
        (0, self.text.len()).into()
    }

    /// The byte offset of a 1-based line and column, clamped to the text.
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let col_bytes: usize = l.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
                return (offset + col_bytes).min(self.text.len());
            }
            offset += l.len();
        }
        self.text.len()
    }
}

/// Whether an error is the user's input (exit code 1) or anything else (exit code 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A graph file, data, plugin, checkpoint or flag the user gave is invalid.
    Input,
    /// Something failed that the input did not cause (I/O, a device, a bug).
    Other,
}

/// stackflow's error: a code such as `graph::unknown_kind`, a message, and where known
/// the source file with labelled spans, a help line and the underlying cause. Boxed, so
/// that `Result<T, Error>` stays one pointer wide.
pub struct Error(Box<Inner>);

struct Inner {
    class: ErrorClass,
    code: &'static str,
    message: String,
    source_code: Option<SourceFile>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    related: Vec<Error>,
}

/// Result with stackflow's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error in what the user gave us (exit code 1).
    pub fn input(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Input, code, message)
    }

    /// Any other failure (exit code 2).
    pub fn other(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Other, code, message)
    }

    fn new(class: ErrorClass, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            class,
            code,
            message: message.into(),
            source_code: None,
            labels: Vec::new(),
            help: None,
            cause: None,
            related: Vec::new(),
        }))
    }

    /// Failure to read or write a file.
    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        let class = match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => ErrorClass::Input,
            _ => ErrorClass::Other,
        };
        Self::new(class, "io", format!("cannot access `{}`", path.display())).with_cause(err)
    }

    /// Attach the source file the spans refer to.
    pub fn with_source(mut self, src: &SourceFile) -> Self {
        self.0.source_code = Some(src.clone());
        self
    }

    /// Add a labelled span.
    pub fn with_label(mut self, span: Span, label: Option<impl Into<String>>) -> Self {
        self.0.labels.push(LabeledSpan::new_with_span(label.map(Into::into), span));
        self
    }

    /// Set the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.0.help = Some(help.into());
        self
    }

    /// Set the underlying cause.
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.cause = Some(Box::new(cause));
        self
    }

    /// Add a diagnostic shown after this one, e.g. the other file of a clash.
    pub fn with_related(mut self, other: Error) -> Self {
        self.0.related.push(other);
        self
    }

    /// Prefix the message with context, e.g. the node path.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.0.message = format!("{prefix}: {}", self.0.message);
        self
    }

    /// Input or other.
    pub fn class(&self) -> ErrorClass {
        self.0.class
    }

    /// The process exit code for this error: 1 invalid input, 2 other failure.
    pub fn exit_code(&self) -> i32 {
        match self.0.class {
            ErrorClass::Input => 1,
            ErrorClass::Other => 2,
        }
    }

    /// The stable error code, e.g. `graph::cycle`.
    pub fn code_str(&self) -> &'static str {
        self.0.code
    }

    /// The message without source context.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The help line, if any.
    pub fn help_text(&self) -> Option<&str> {
        self.0.help.as_deref()
    }

    /// The name of the file this error points into (where its first label is), if any.
    pub fn file_name(&self) -> Option<&str> {
        let src = self.0.source_code.as_ref()?;
        Some(self.0.labels.first().map_or(src.name.as_str(), |l| src.file_at(l.offset()).0))
    }

    /// The labelled spans.
    pub fn spans(&self) -> &[LabeledSpan] {
        &self.0.labels
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.0.message, self.0.code)?;
        if let Some(name) = self.file_name() {
            write!(f, " in {name}")?;
        }
        for l in &self.0.labels {
            write!(f, " @{}..{}", l.offset(), l.offset() + l.len())?;
        }
        Ok(())
    }
}

/// The longest source line drawn under a diagnostic; miette cannot draw spans much
/// further right (its padding width is limited), and nobody reads such a line anyway.
const MAX_DRAWN_LINE: usize = 4096;

impl Error {
    /// Line and column (1-based) of the first label when its line is too long to draw.
    fn undrawable_at(&self) -> Option<(usize, usize)> {
        let src = self.0.source_code.as_ref()?;
        for l in &self.0.labels {
            let (_, start, text) = src.file_at(l.offset());
            let mut at = (l.offset() - start).min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            if end - start > MAX_DRAWN_LINE {
                let line = text[..at].matches('\n').count() + 1;
                return Some((line, text[start..at].chars().count() + 1));
            }
        }
        None
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let (Some((line, col)), Some(name)) = (self.undrawable_at(), self.file_name()) {
            write!(f, " (at {name}:{line}:{col})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.cause.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let (name, start, text) = self.file_at(span.offset());
        if span.offset() + span.len() > start + text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let local = SourceSpan::new((span.offset() - start).into(), span.len());
        let c = text.read_span(&local, context_lines_before, context_lines_after)?;
        let global = SourceSpan::new((c.span().offset() + start).into(), c.span().len());
        Ok(Box::new(MietteSpanContents::new_named(
            name.to_string(),
            c.data(),
            global,
            c.line(),
            c.column(),
            c.line_count(),
        )))
    }
}

impl Diagnostic for Error {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.undrawable_at().is_some() {
            return None;
        }
        self.0.source_code.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.0.related.is_empty() {
            None
        } else {
            Some(Box::new(self.0.related.iter().map(|e| e as &dyn Diagnostic)))
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.0.labels.is_empty() || self.undrawable_at().is_some() {
            None
        } else {
            Some(Box::new(self.0.labels.iter().cloned()))
        }
    }
}

/// "did you mean `x`?" for a misspelt name among `candidates`.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
