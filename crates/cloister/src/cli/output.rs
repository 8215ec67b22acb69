//! Everything the CLI prints on standard output goes through here, so a reader that goes away
//! early (`cloister … list | head -1`) ends the command quietly with exit 0 instead of a panic
//! (Rust's `println!` panics on a closed pipe).

use std::io::Write;

/// Writes `bytes` to standard output and flushes, so a closed pipe is noticed here.
pub fn bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes `text` and a newline.
pub fn line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `text` with its control characters escaped (`\u{1b}`), for text meant for a terminal:
/// audit entries and listed names carry what other callers chose (an unverified token's
/// `sub`), and an escape sequence there must not drive the reader's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Whether the error is, somewhere in its chain, standard output's reader having gone away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns the write's error instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(&format!($($arg)*))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        for (text, shown) in [
            ("plain · text", "plain · text"),
            ("\u{1b}]0;owned\u{7}", "\\u{1b}]0;owned\\u{7}"),
            ("two\nlines\ttab", "two\\nlines\\ttab"),
        ] {
            assert_eq!(super::printable(text), shown);
        }
    }
}
