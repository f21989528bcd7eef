//! Escaping of values put into LDAP filters (RFC 4515 §3) and distinguished names
//! (RFC 4514 §2.4). Every value that comes from a user or from a directory entry goes through
//! one of these before it becomes part of a filter or DN, so no value can change a filter's
//! structure or a DN's components.

use std::fmt::Write as _;

/// `value` as an RFC 4515 assertion value: `*`, `(`, `)`, `\` and NUL (the characters the
/// RFC requires escaping) and every other control character become `\XX`. UTF-8 beyond
/// ASCII stays as it is (RFC 4515 `UTFMB`).
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if matches!(c, '*' | '(' | ')' | '\\') || c.is_ascii_control() {
            // ASCII: one byte.
            let _ = write!(out, "\\{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as an RFC 4514 attribute value inside a DN: `"`, `+`, `,`, `;`, `<`, `>`, `\`
/// escaped with a backslash, a leading `#` or space and a trailing space escaped, NUL and
/// other control characters as `\XX`.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// An equality filter `(attr=value)` with `value` escaped.
pub fn equality(attr: &str, value: &str) -> String {
    format!("({attr}={})", filter_value(value))
}

/// `extra` (a configured filter, possibly empty) ANDed with `term`.
pub fn and(extra: &str, term: &str) -> String {
    if extra.is_empty() {
        term.to_owned()
    } else {
        format!("(&{extra}{term})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filter_specials_are_hex_escaped() {
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value(")(uid=*"), "\\29\\28uid=\\2a");
        assert_eq!(filter_value("a\\b"), "a\\5cb");
        assert_eq!(filter_value("x\0y"), "x\\00y");
        assert_eq!(filter_value("Jürgen"), "Jürgen");
        assert_eq!(equality("uid", "*"), "(uid=\\2a)");
        assert_eq!(and("", "(uid=a)"), "(uid=a)");
        assert_eq!(
            and("(objectClass=person)", "(uid=a)"),
            "(&(objectClass=person)(uid=a))"
        );
    }

    #[test]
    fn dn_specials_are_escaped() {
        assert_eq!(dn_value("a,b+c\"d"), "a\\,b\\+c\\\"d");
        assert_eq!(dn_value("<x>;=y"), "\\<x\\>\\;=y");
        assert_eq!(dn_value("#lead"), "\\#lead");
        assert_eq!(dn_value("mid#"), "mid#");
        assert_eq!(dn_value(" pad "), "\\ pad\\ ");
        assert_eq!(dn_value("nul\0"), "nul\\00");
        assert_eq!(dn_value("Ærøskøbing"), "Ærøskøbing");
    }

    proptest! {
        // Whatever the input, the escaped value has no character that could open, close or
        // wildcard a filter component, and no raw control byte.
        #[test]
        fn escaped_filter_values_are_inert(s in any::<String>()) {
            let e = filter_value(&s);
            prop_assert!(!e.contains(['*', '(', ')', '\0']));
            prop_assert!(!e.chars().any(|c| c.is_ascii_control()));
            // Every backslash starts a two-digit hex escape.
            let bytes = e.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'\\' {
                    let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                    prop_assert!(hex.len() == 2 && hex.iter().all(u8::is_ascii_hexdigit));
                }
            }
        }

        // Escaped DN values never hold an unescaped separator.
        #[test]
        fn escaped_dn_values_have_no_bare_separators(s in any::<String>()) {
            let e = dn_value(&s);
            let mut escaped = false;
            for c in e.chars() {
                if escaped {
                    escaped = false;
                    continue;
                }
                if c == '\\' {
                    escaped = true;
                    continue;
                }
                prop_assert!(!matches!(c, ',' | '+' | ';' | '"' | '<' | '>' | '\0'));
            }
        }
    }
}
