//! Errors in `system.toml`: a message, the key it is about, and where (a byte span), with
//! rendering as a snippet (miette) and a plain `file:line:column` form.

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use std::fmt;

pub use cleave_system::error::SystemError;

/// An error with its source, for miette.
struct Located<'a> {
    error: &'a SystemError,
    source: NamedSource<String>,
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.error, f)
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.error, f)
    }
}

impl std::error::Error for Located<'_> {}

impl Diagnostic for Located<'_> {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.error.span.clone();
        let len = span.end.saturating_sub(span.start).max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new(Some(self.error.key.clone()), span.start, len))))
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.error.help.as_ref().map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
}

/// Renders `errors` in `text` (read from `file`) as snippets, each headed `file:line:col`.
pub fn render(errors: &[SystemError], file: &str, text: &str) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    for error in errors {
        let (line, column) = error.line_column(text);
        out.push_str(&format!("error: {file}:{line}:{column}: {}\n", error.message));
        let located = Located { error, source: NamedSource::new(file, text.to_string()) };
        let _ = handler.render_report(&mut out, &located);
        out.push('\n');
    }
    out
}
