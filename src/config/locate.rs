//! Names the key behind a TOML error: turns the byte span toml reports into
//! `[table] key = value`, so every bad-value message names the key, the value and (from the
//! deserializer) what is allowed.
//!
//! It reads the source text backwards from the span: the nearest `key =` gives the key, the
//! nearest `[table]` header the table. It handles the forms our files use (tables, dotted
//! keys, multi-line arrays); for anything else it returns `None` and the caller falls back to
//! line and column.
//!
//! Invariant: the value of a secret key (`[admin] token`, however it is written: in a table,
//! dotted or in an inline table) is never quoted; the location reads `[admin] token = <redacted>`.

use std::ops::Range;

/// Line and column (1-based) of byte offset `at` in `src`.
pub(crate) fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = floor_char_boundary(src, at.min(src.len()));
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `[table] key = value` (or `[table] key` when the span is the key itself).
pub(crate) fn locate(src: &str, span: Range<usize>) -> Option<String> {
    let start = floor_char_boundary(src, span.start.min(src.len()));
    let end = floor_char_boundary(src, span.end.clamp(start, src.len()));
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = &src[line_start..line_end];
    let before = &src[line_start..start];
    let spanned = &src[start..end];

    // The span is a table header's name (`[zz]`): an unknown table.
    if line.trim_start().starts_with('[') && !before.contains('=') {
        let name = spanned.trim().trim_matches('"');
        let plain = !name.is_empty() && !name.contains(['\n', '[', ']']);
        return plain.then(|| format!("[{name}]"));
    }
    // The span is a key (unknown or duplicate key): `zz = 1`.
    let after = &src[end.min(line_end)..line_end];
    if before.trim().is_empty() && after.trim_start().starts_with('=') {
        return Some(path_display(table_above(src, line_start), spanned));
    }
    // The span is a value: find its key on this line or above (multi-line arrays).
    let key = key_just_before(before)
        .or_else(|| key_of(before))
        .or_else(|| {
            src[..line_start]
                .lines()
                .rev()
                .take_while(|l| !l.trim_start().starts_with('['))
                .find_map(key_of)
        })?;
    let value = one_line(spanned);
    let path = path_display(table_above(src, line_start), key);
    if is_secret(&path) {
        return Some(format!("{path} = <redacted>"));
    }
    if value.is_empty() {
        Some(path)
    } else {
        Some(format!("{path} = {value}"))
    }
}

/// Whether the key at `path` (as [`path_display`] writes it) holds a secret. Matched on the
/// last key alone, so an inline table (`admin = { token = … }`) is covered too.
fn is_secret(path: &str) -> bool {
    const SECRET_KEYS: [&str; 1] = ["token"];
    let last = path.rsplit([' ', '.']).next().unwrap_or(path);
    SECRET_KEYS.contains(&last)
}

/// The key at the start of `line` when it reads `key = …` (dotted keys kept whole).
fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    let ok = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.\" ".contains(&b));
    ok.then_some(k)
}

/// The key of `… key = ` when the value starts right after it (also inside inline tables).
fn key_just_before(before: &str) -> Option<&str> {
    let k = before.trim_end().strip_suffix('=')?.trim_end();
    let from = k
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_-.\"".contains(*c)))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let k = &k[from..];
    (!k.is_empty()).then_some(k)
}

/// The `[table]` header governing text before `pos`, if any.
fn table_above(src: &str, pos: usize) -> Option<&str> {
    src[..pos].lines().rev().find_map(|l| {
        let t = l.trim();
        let inner = t.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim())
    })
}

/// Joins a table and a (possibly dotted) key into `[a.b] c`.
fn path_display(table: Option<&str>, key: &str) -> String {
    let mut parts: Vec<String> = table
        .into_iter()
        .flat_map(|t| t.split('.'))
        .chain(key.split('.'))
        .map(|p| p.trim().trim_matches('"').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let last = parts.pop().unwrap_or_default();
    if parts.is_empty() {
        last
    } else {
        format!("[{}] {last}", parts.join("."))
    }
}

/// The value text on one line, shortened to 60 characters.
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 60 {
        format!("{}…", flat.chars().take(60).collect::<String>())
    } else {
        flat
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(src: &str, needle: &str) -> Range<usize> {
        let i = src.rfind(needle).unwrap();
        i..i + needle.len()
    }

    #[test]
    fn value_in_table() {
        let src = "[node]\nid = \"x\"\n\n[presence]\nmin_expires_action = 3 # c\n";
        assert_eq!(
            locate(src, at(src, "3")).as_deref(),
            Some("[presence] min_expires_action = 3")
        );
        assert_eq!(line_col(src, at(src, "3").start), (5, 22));
    }

    #[test]
    fn key_and_table_spans() {
        let src = "[presence]\nzz = 30\n";
        assert_eq!(locate(src, at(src, "zz")).as_deref(), Some("[presence] zz"));
        let src = "[zz]\na = 1\n";
        assert_eq!(locate(src, 1..3).as_deref(), Some("[zz]"));
    }

    #[test]
    fn secret_values_are_never_quoted() {
        for (src, needle) in [
            ("[admin]\ntoken = 12345\n", "12345"),
            ("admin.token = 12345\n", "12345"),
            ("admin = { listen = \"\", token = 12345 }\n", "12345"),
            ("[admin]\ntoken = [\n  \"s3cr3t\",\n]\n", "\"s3cr3t\""),
        ] {
            let shown = locate(src, at(src, needle)).unwrap_or_default();
            assert!(shown.ends_with("token = <redacted>"), "{src}: {shown}");
            assert!(!shown.contains(needle.trim_matches('"')), "{src}: {shown}");
        }
        assert_eq!(
            locate("[admin]\ntoken = 1\n", 8..13).as_deref(),
            Some("[admin] token"),
            "the key span alone is fine"
        );
        assert!(!is_secret("[admin] listen"));
        assert!(is_secret("[admin] token"));
    }

    #[test]
    fn multi_line_array_and_dotted_key() {
        let src = "[sip]\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  \"bogus\",\n]\n";
        assert_eq!(
            locate(src, at(src, "\"bogus\"")).as_deref(),
            Some("[sip] listen = \"bogus\"")
        );
        let src = "presence.force_delete = 4\n";
        assert_eq!(
            locate(src, at(src, "4")).as_deref(),
            Some("[presence] force_delete = 4")
        );
    }
}
