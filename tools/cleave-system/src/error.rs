//! An error in a system description: what is wrong, the key it concerns and where in the
//! text it is, with optional help. (The CLI renders these as snippets; build scripts
//! print them as `file:line:column: message`.)

use std::fmt;
use std::ops::Range;

/// One error in a system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemError {
    /// What is wrong.
    pub message: String,
    /// The TOML key (dotted path) the error is about.
    pub key: String,
    /// Byte range in the file.
    pub span: Range<usize>,
    /// How to fix it, if there is something to say.
    pub help: Option<String>,
}

impl SystemError {
    /// An error at `span` about `key`.
    pub fn new(key: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Self { message: message.into(), key: key.into(), span, help: None }
    }

    /// With a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the span's start in `text`.
    pub fn line_column(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (key `{}`)", self.message, self.key)
    }
}

impl std::error::Error for SystemError {}

/// `errors` as `error: FILE:LINE:COLUMN: message` lines, each with its key and help: the
/// form build scripts print (they have no terminal to draw snippets on).
pub fn render_plain(errors: &[SystemError], file: &str, text: &str) -> String {
    let mut out = String::new();
    for error in errors {
        let (line, column) = error.line_column(text);
        out.push_str(&format!("error: {file}:{line}:{column}: {} (key `{}`)\n", error.message, error.key));
        if let Some(help) = &error.help {
            out.push_str(&format!("  help: {help}\n"));
        }
    }
    out
}
