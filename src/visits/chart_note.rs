//! The visit's record in the patient's chart: what a partner writes of its result into Hint as
//! a document interaction (a title and a Markdown body a clinician reads at a glance), beside
//! the partner interaction that links back to our page.
//!
//! Partner text is escaped (every ASCII punctuation mark, so no link, image, HTML or list can
//! come from a partner's words) and the body is capped, with a visible line saying that the
//! full result is in Chartbridge.

/// Longest body written to the chart, in bytes (a note of a few pages).
pub const MAX_BODY: usize = 20_000;

/// The line a shortened body ends with.
pub const SHORTENED: &str = "_Shortened: the full result is in Chartbridge._";

/// What a partner writes into the chart for a signed visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartNote {
    pub title: String,
    /// Markdown, escaped and capped ([`Markdown::finish`]).
    pub body: String,
}

/// A Markdown body built from partner text: every piece of it escaped.
#[derive(Debug, Default)]
pub struct Markdown {
    out: String,
}

impl Markdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) -> &mut Self {
        self.block(&format!("### {}", escape_line(text)))
    }

    /// A labelled value: the label in bold, the value after it (its lines kept).
    pub fn field(&mut self, label: &str, value: &str) -> &mut Self {
        let value = if value.trim().is_empty() {
            "—".to_string()
        } else {
            escape(value.trim())
        };
        self.block(&format!("**{}:** {value}", escape_line(label)))
    }

    /// A paragraph of partner text (its lines kept).
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        if text.trim().is_empty() {
            return self;
        }
        self.block(&escape(text.trim()))
    }

    /// A bulleted list; nothing when `items` is empty.
    pub fn list<I: IntoIterator<Item = String>>(&mut self, items: I) -> &mut Self {
        let lines: Vec<String> = items
            .into_iter()
            .filter(|i| !i.trim().is_empty())
            .map(|i| format!("- {}", escape_line(i.trim())))
            .collect();
        if lines.is_empty() {
            return self;
        }
        self.block(&lines.join("\n"))
    }

    fn block(&mut self, markdown: &str) -> &mut Self {
        if !self.out.is_empty() {
            self.out.push_str("\n\n");
        }
        self.out.push_str(markdown);
        self
    }

    /// The body, cut to [`MAX_BODY`] at a line's end with [`SHORTENED`] when longer.
    pub fn finish(self) -> String {
        capped(self.out)
    }
}

/// `body` cut to [`MAX_BODY`] at a line's end with [`SHORTENED`] when longer.
fn capped(body: String) -> String {
    if body.len() <= MAX_BODY {
        return body;
    }
    let mut cut = MAX_BODY - SHORTENED.len() - 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = &body[..cut];
    let kept = kept.rfind('\n').map_or(kept, |at| &kept[..at]).trim_end();
    format!("{kept}\n\n{SHORTENED}")
}

/// An earlier result of a corrected visit, as the chart shows it.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// When a correction replaced it (Unix ms).
    pub replaced_at: i64,
    /// What the correction changed (field names, Markdown).
    pub what_changed: String,
    pub note: ChartNote,
}

/// The body of a corrected visit's document: the latest result, then for each correction
/// (newest first) when it came and what it changed, followed by the version it replaced.
pub fn with_corrections(latest: &ChartNote, earlier: &[Earlier]) -> String {
    let mut body = latest.body.clone();
    for version in earlier.iter().rev() {
        let when = crate::db::format_ms(version.replaced_at);
        body.push_str(&format!(
            "\n\n---\n\n**Corrected {}:** {} changed\\. The version before it:\n\n{}",
            escape(&when),
            version.what_changed,
            version.note.body
        ));
    }
    capped(body)
}

/// What a correction changed, as the names of the fields (and sections) whose text differs
/// between two bodies; "the text" when nothing named changed.
pub fn what_changed(before: &str, after: &str) -> String {
    let fields = |body: &str| -> Vec<(String, String)> {
        body.split("\n\n")
            .filter_map(|block| {
                let rest = block.strip_prefix("**")?;
                let (label, value) = rest.split_once(":** ")?;
                Some((label.to_string(), value.to_string()))
            })
            .collect()
    };
    let (old, new) = (fields(before), fields(after));
    let mut changed: Vec<String> = Vec::new();
    for (label, value) in &new {
        if !old.iter().any(|(l, v)| l == label && v == value) && !changed.contains(label) {
            changed.push(label.clone());
        }
    }
    for (label, _) in &old {
        if !new.iter().any(|(l, _)| l == label) && !changed.contains(label) {
            changed.push(label.clone());
        }
    }
    if changed.is_empty() {
        "The text".to_string()
    } else {
        changed.join(", ")
    }
}

/// Partner text as Markdown that shows exactly that text: every ASCII punctuation mark
/// escaped (CommonMark lets any of them be), line breaks kept as hard breaks.
pub fn escape(text: &str) -> String {
    text.lines()
        .map(escape_line)
        .collect::<Vec<_>>()
        .join("  \n")
}

/// One line of partner text, escaped; control characters (a line break too) become spaces.
fn escape_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_words_cannot_make_links_images_html_or_structure() {
        for hostile in [
            "[click](https://evil.example)",
            "![x](https://evil.example/t.png)",
            "<script>alert(1)</script>",
            "<https://evil.example>",
            "# Heading",
            "1. list",
            "- item",
            "**bold**",
            "`code`",
            "a | table |",
            "&amp;",
        ] {
            let escaped = escape(hostile);
            for c in ['[', ']', '(', ')', '<', '>', '#', '*', '`', '|', '&', '!'] {
                assert!(
                    !escaped
                        .char_indices()
                        .any(|(i, x)| x == c && !escaped[..i].ends_with('\\')),
                    "{hostile:?} → {escaped:?} leaves {c} bare"
                );
            }
        }
        assert_eq!(
            escape("Dose: 5 mg.\nTwice a day"),
            "Dose\\: 5 mg\\.  \nTwice a day"
        );
    }

    #[test]
    fn a_correction_names_what_changed_and_keeps_the_version_before() {
        let before = "**Reason:** Cough\n\n**Plan:** Rest\n\n**Dose:** 5 mg";
        let after = "**Reason:** Cough\n\n**Plan:** Antibiotics\n\n**Allergy:** None";
        assert_eq!(what_changed(before, after), "Plan, Allergy, Dose");
        assert_eq!(what_changed(before, before), "The text");
        let latest = ChartNote {
            title: "Visit note".into(),
            body: after.into(),
        };
        let earlier = Earlier {
            replaced_at: 0,
            what_changed: what_changed(before, after),
            note: ChartNote {
                title: "Visit note".into(),
                body: before.into(),
            },
        };
        let body = with_corrections(&latest, &[earlier]);
        assert!(body.starts_with(after), "{body}");
        assert!(
            body.contains("**Corrected 1970\\-01\\-01 00\\:00 UTC:** Plan, Allergy, Dose changed")
        );
        assert!(body.ends_with(before), "{body}");
    }

    #[test]
    fn a_long_body_is_shortened_visibly_at_a_line_end() {
        let mut md = Markdown::new();
        for i in 0..2_000 {
            md.field(&format!("Line {i}"), "Sofía said the pain is better");
        }
        let body = md.finish();
        assert!(body.len() <= MAX_BODY, "{}", body.len());
        assert!(body.ends_with(SHORTENED));
        let mut short = Markdown::new();
        short
            .heading("Report")
            .field("Reason", "Cough")
            .list(["a".into(), String::new()]);
        assert_eq!(short.finish(), "### Report\n\n**Reason:** Cough\n\n- a");
    }
}
