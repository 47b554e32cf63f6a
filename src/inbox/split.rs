//! Splits a reply into platform-sized messages on the most natural boundary that fits: a
//! paragraph, a line, a sentence, a word — and only as a last resort inside a word. A code block
//! cut in two is closed at the end of one message and reopened (with its language) in the next.

/// A platform's message size limit and how it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// UTF-16 code units (Telegram).
    Utf16(usize),
    /// Unicode scalar values (Discord, WhatsApp).
    Chars(usize),
}

impl Limit {
    fn max(self) -> usize {
        match self {
            Limit::Utf16(n) | Limit::Chars(n) => n,
        }
    }

    pub fn measure(self, text: &str) -> usize {
        match self {
            Limit::Utf16(_) => text.encode_utf16().count(),
            Limit::Chars(_) => text.chars().count(),
        }
    }

    fn char_len(self, c: char) -> usize {
        match self {
            Limit::Utf16(_) => c.len_utf16(),
            Limit::Chars(_) => 1,
        }
    }
}

const FENCE: &str = "```";
const CLOSE: &str = "\n```";

/// Splits `text` into pieces that each fit `limit`.
pub fn split(text: &str, limit: Limit) -> Vec<String> {
    let text = text.trim_end();
    if text.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = text;
    let mut open_fence: Option<String> = None;
    loop {
        let prefix = open_fence.as_ref().map(|f| format!("{f}\n")).unwrap_or_default();
        if limit.measure(&prefix) + limit.measure(rest) <= limit.max() {
            out.push(format!("{prefix}{rest}"));
            break;
        }
        // Room for the reopened fence before and a closing fence after.
        let budget = limit.max().saturating_sub(limit.measure(&prefix) + limit.measure(CLOSE)).max(1);
        let window = prefix_within(rest, budget, limit);
        let cut = best_break(&rest[..window]);
        let chunk = &rest[..cut];
        let fence_after = fence_state(open_fence.clone(), chunk);
        let mut piece = format!("{prefix}{}", chunk.trim_end());
        if fence_after.is_some() {
            piece.push_str(CLOSE);
        }
        out.push(piece);
        open_fence = fence_after;
        rest = &rest[cut..];
        // A paragraph or line break that ended the previous piece is not repeated at the start.
        if open_fence.is_none() {
            rest = rest.trim_start_matches(['\n', ' ']);
        } else {
            rest = rest.trim_start_matches('\n');
        }
        if rest.trim().is_empty() {
            break;
        }
    }
    out
}

/// Byte length of the longest prefix of `text` that fits in `budget` units (at least one char).
fn prefix_within(text: &str, budget: usize, limit: Limit) -> usize {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += limit.char_len(c);
        if used > budget {
            return if i == 0 { c.len_utf8() } else { i };
        }
    }
    text.len()
}

type Finder = dyn Fn(&str) -> Option<usize>;

/// Where to cut inside `window`: after the last paragraph break, line break, sentence end or
/// space that keeps the piece at least a quarter full; else at the window's end.
fn best_break(window: &str) -> usize {
    let floor = window.len() / 4;
    let candidates: [&Finder; 4] = [
        &|w| w.rfind("\n\n").map(|i| i + 2),
        &|w| w.rfind('\n').map(|i| i + 1),
        &|w| [". ", "! ", "? ", "。"].iter().filter_map(|s| w.rfind(s).map(|i| i + s.len())).max(),
        &|w| w.rfind(' ').map(|i| i + 1),
    ];
    for find in candidates {
        if let Some(i) = find(window)
            && i > floor
        {
            return i;
        }
    }
    window.len()
}

/// The fence line still open after `chunk`, given the one open before it.
fn fence_state(mut open: Option<String>, chunk: &str) -> Option<String> {
    for line in chunk.lines() {
        let line = line.trim();
        if line.starts_with(FENCE) {
            open = match open {
                Some(_) => None,
                None => Some(line.to_string()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split("hello", Limit::Chars(10)), vec!["hello"]);
        assert!(split("   ", Limit::Chars(10)).is_empty());
    }

    #[test]
    fn splits_on_paragraphs_then_sentences() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b".repeat(30));
        assert_eq!(split(&text, Limit::Chars(40)), vec!["a".repeat(30), "b".repeat(30)]);
        let text = "One sentence here. Another sentence there. A third one.";
        let pieces = split(text, Limit::Chars(30));
        assert!(pieces.iter().all(|p| p.chars().count() <= 30), "{pieces:?}");
        assert_eq!(pieces[0], "One sentence here.");
    }

    #[test]
    fn counts_utf16_units_for_telegram() {
        let text = "😀".repeat(3000); // 6000 UTF-16 units, 3000 chars
        let pieces = split(&text, Limit::Utf16(4096));
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.encode_utf16().count() <= 4096));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split(&text, Limit::Chars(4096)).len(), 1);
    }

    #[test]
    fn code_blocks_are_closed_and_reopened() {
        let code: String = (0..40).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.");
        let pieces = split(&text, Limit::Chars(200));
        assert!(pieces.len() > 2);
        for p in &pieces {
            assert!(p.chars().count() <= 200, "{p}");
            assert_eq!(p.matches("```").count() % 2, 0, "balanced fences in {p:?}");
        }
        assert!(pieces[1].starts_with("```rust\n"), "{:?}", pieces[1]);
    }
}
