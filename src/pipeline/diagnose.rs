//! Small helpers for turning library errors into one-line messages.

/// The innermost cause of an error chain (e.g. "Connection refused (os error 111)").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The first line of a possibly multi-line message.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
