//! Log lines quote what clients and origins chose (methods, hosts,
//! targets, error texts) only up to a bound, so no request or response can
//! make a log line arbitrarily long.

/// The most of any one client- or origin-chosen text a log line quotes.
const LOGGED_TEXT_BYTES: usize = 512;

/// `text` cut to [`LOGGED_TEXT_BYTES`] (at a character boundary), saying
/// how much was left out, so no request or response can make a log line
/// arbitrarily long.
pub(super) fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LOGGED_TEXT_BYTES {
        return text.into();
    }
    let mut end = LOGGED_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_text_is_bounded_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(LOGGED_TEXT_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() < LOGGED_TEXT_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} more bytes)", long.len() - LOGGED_TEXT_BYTES)));
    }
}
