//! Diagnostics: every problem in a stack file, each with its place in the file and a hint,
//! collected together and rendered with the source line (miette).

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// Stable identifier, e.g. `unknown-field`: what tests and tools match on.
    pub code: &'static str,
    pub message: String,
    pub span: Range<usize>,
    pub help: Option<String>,
}

/// The problems found so far in one file.
#[derive(Debug, Default)]
pub struct Diags {
    pub items: Vec<Diag>,
}

impl Diags {
    pub fn error(&mut self, code: &'static str, span: Range<usize>, message: impl Into<String>, help: Option<String>) {
        self.items.push(Diag { code, message: message.into(), span, help });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Renders every diagnostic: `file:line:col`, the message, the source line with a marker, and
/// the hint.
pub fn render(file: &str, src: &str, diags: &[Diag], color: bool) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let mut out = String::new();
    for d in diags {
        let (line, col) = line_col(src, d.span.start);
        let mut m = MietteDiagnostic::new(format!("{file}:{line}:{col}: {}", d.message))
            .with_code(d.code)
            .with_label(LabeledSpan::at(d.span.clone(), "here"));
        if let Some(h) = &d.help {
            m = m.with_help(h.clone());
        }
        let report = Report::new(m).with_source_code(NamedSource::new(file, src.to_owned()));
        let _ = handler.render_report(&mut out, report.as_ref());
        out.push('\n');
    }
    out.push_str(&format!("{} problem{} in {file}\n", diags.len(), if diags.len() == 1 { "" } else { "s" }));
    out
}

/// "did you mean" for a misspelt name.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    // Transpositions count once, so `vcp` is one step from `vpc`.
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(dist, _)| *dist <= limit)
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
    }

    #[test]
    fn rendering_shows_place_source_and_hint() {
        let src = "[vcp.main]\ncidr = \"10.0.0.0/16\"\n";
        let d = Diag {
            code: "unknown-kind",
            message: "unknown kind `vcp`".into(),
            span: 1..4,
            help: Some("did you mean `vpc`?".into()),
        };
        let text = render("stacks/x.toml", src, &[d], false);
        assert!(text.contains("stacks/x.toml:1:2: unknown kind `vcp`"), "{text}");
        assert!(text.contains("[vcp.main]"), "{text}");
        assert!(text.contains("did you mean `vpc`?"), "{text}");
        assert!(text.contains("1 problem in stacks/x.toml"), "{text}");
    }
}
