//! The request path as RBAC sees it, normalised exactly once.
//!
//! RFC 3986 §6.2.2: percent-encodings of unreserved characters are decoded (and other
//! encodings written in upper case), `.` and `..` segments removed (§5.2.4; never above the
//! root), empty segments collapsed. `;` parameters (`;jsessionid=…`), the query and the fragment
//! are never part of the path. Anything else encoded (`%2F`, `%25`) stays encoded: it is data,
//! not structure, and is not decoded a second time.

/// Longest path accepted.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A byte that may not appear in a request target (control, space, non-ASCII, `\`).
    BadByte,
    /// Not starting with `/`.
    NotAbsolute,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::TooLong => "the path is longer than 4096 bytes",
            PathError::BadEscape => "the path has a `%` not followed by two hex digits",
            PathError::BadByte => {
                "the path has a byte a URI may not hold (control, space, non-ASCII or `\\`)"
            }
            PathError::NotAbsolute => "the path does not start with `/`",
        })
    }
}

/// The path part of a request target: up to `?` or `#`.
pub fn path_of(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    target.get(..end).unwrap_or(target)
}

/// The query of a request target (without `?`), before any fragment.
pub fn query_of(target: &str) -> Option<&str> {
    let start = target.find('?')?;
    let rest = target.get(start + 1..)?;
    Some(
        rest.get(..rest.find('#').unwrap_or(rest.len()))
            .unwrap_or(rest),
    )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One segment: parameters cut, unreserved escapes decoded, other escapes upper-cased.
fn segment(raw: &str) -> Result<String, PathError> {
    let raw = raw.get(..raw.find(';').unwrap_or(raw.len())).unwrap_or(raw);
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let decoded = h * 16 + l;
            if unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                for digit in [h, l] {
                    let c = char::from_digit(u32::from(digit), 16).unwrap_or('0');
                    out.push(c.to_ascii_uppercase());
                }
            }
            i += 3;
        } else {
            if !b.is_ascii_graphic() || b == b'\\' {
                return Err(PathError::BadByte);
            }
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(out)
}

/// Normalises the path of a request target (query and fragment are cut first).
pub fn normalize(target: &str) -> Result<String, PathError> {
    let raw = path_of(target);
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out: Vec<String> = Vec::new();
    let mut trailing = false;
    for raw_segment in raw.split('/').skip(1) {
        let s = segment(raw_segment)?;
        trailing = false;
        match s.as_str() {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            _ => out.push(s),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if trailing || path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_once() {
        for (input, want) in [
            ("/", "/"),
            ("", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("//a", "/a"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc", "/etc"),
            ("/a/b/..", "/a/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%252e%252e/b", "/a%252e%252e/b"),
            ("/%61dmin", "/admin"),
            ("/a;jsessionid=1/b;x", "/a/b"),
            ("/a/..;/b", "/b"),
            ("/a?x=/../admin", "/a"),
            ("/a#/../admin", "/a"),
            ("/Admin", "/Admin"),
        ] {
            let input = if input.is_empty() { "/" } else { input };
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_what_a_uri_cannot_hold() {
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a\\b"), Err(PathError::BadByte));
        assert_eq!(normalize("/a b"), Err(PathError::BadByte));
        assert_eq!(normalize("/é"), Err(PathError::BadByte));
        assert_eq!(normalize("a"), Err(PathError::NotAbsolute));
        assert_eq!(
            normalize(&format!("/{}", "a".repeat(5000))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/%2e%2e/b", "/x%2Fy/./z//", "/a%25/b"] {
            let once = normalize(p).unwrap();
            assert_eq!(normalize(&once).unwrap(), once);
        }
    }
}
