//! Name and label syntax, with the rules of Kubernetes' apimachinery validation
//! (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`).
//!
//! Each check returns `Err(message)` with a sentence that says what is wrong and what is
//! allowed; the caller adds the field path.

/// Longest DNS-1123 label (RFC 1123 §2.1, as Kubernetes `DNS1123LabelMaxLength`).
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// Longest DNS-1123 subdomain (as Kubernetes `DNS1123SubdomainMaxLength`).
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
/// Longest name part of a qualified name (label key, annotation key, finalizer).
pub const QUALIFIED_NAME_MAX_LEN: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LEN: usize = 63;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One DNS-1123 label: lower-case alphanumerics and `-`, starting and ending alphanumeric.
fn label_chars_ok(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_lower_alnum(first)
        && is_lower_alnum(last)
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// Checks a DNS-1123 label (names of namespaces, workspaces, projects): at most 63
/// characters, lower-case alphanumerics or `-`, starting and ending with an alphanumeric.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_LABEL_MAX_LEN {
        return Err(format!(
            "must be no more than {DNS1123_LABEL_MAX_LEN} characters (is {})",
            s.len()
        ));
    }
    if !label_chars_ok(s) {
        return Err(
            "a DNS-1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (names of most objects): at most 253 characters, one or
/// more DNS-1123 labels joined by `.`.
///
/// As Kubernetes, the single labels are not limited to 63 characters here; only the total is.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        return Err(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} characters (is {})",
            s.len()
        ));
    }
    if !s.split('.').all(label_chars_ok) {
        return Err(
            "a DNS-1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character \
             (e.g. 'example.com')"
                .to_owned(),
        );
    }
    Ok(())
}

/// Name part of a qualified name or a non-empty label value:
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn qualified_chars_ok(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a qualified name (label and annotation keys, finalizers): an optional
/// DNS-1123 subdomain prefix and `/`, then a name of at most 63 characters made of
/// alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".to_owned());
        }
        dns1123_subdomain(prefix).map_err(|m| format!("prefix part {m}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".to_owned());
    }
    if name.len() > QUALIFIED_NAME_MAX_LEN {
        return Err(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX_LEN} characters (is {})",
            name.len()
        ));
    }
    if !qualified_chars_ok(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character \
             (e.g. 'MyName', 'my.name' or 'example.com/my-name')"
                .to_owned(),
        );
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of alphanumerics, `-`, `_`
/// and `.`, starting and ending with an alphanumeric.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > LABEL_VALUE_MAX_LEN {
        return Err(format!(
            "must be no more than {LABEL_VALUE_MAX_LEN} characters (is {})",
            s.len()
        ));
    }
    if !qualified_chars_ok(s) {
        return Err(
            "a valid label value must be an empty string or consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric \
             character (e.g. 'MyValue' or 'my_value')"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference model of one dot-separated part, written apart from the checker above.
    fn model_part(s: &str) -> bool {
        let b = s.as_bytes();
        let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(ok)
            && b.last().is_some_and(ok)
            && b.iter().all(|c| ok(c) || *c == b'-')
    }

    proptest! {
        #[test]
        fn generated_labels_are_accepted(s in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?") {
            prop_assert!(dns1123_label(&s).is_ok());
            prop_assert!(dns1123_subdomain(&s).is_ok());
            prop_assert!(qualified_name(&s).is_ok());
            prop_assert!(label_value(&s).is_ok());
        }

        #[test]
        fn names_agree_with_the_model(s in "[-a-z0-9.]{0,80}|[-a-zA-Z0-9._/]{0,70}|\\PC{0,10}") {
            prop_assert_eq!(dns1123_label(&s).is_ok(), s.len() <= 63 && model_part(&s), "{:?}", s);
            let subdomain = s.len() <= 253 && s.split('.').all(model_part);
            prop_assert_eq!(dns1123_subdomain(&s).is_ok(), subdomain, "{:?}", s);
        }

        #[test]
        fn accepted_names_are_bounded(s in "\\PC{0,300}") {
            if dns1123_subdomain(&s).is_ok() {
                prop_assert!(s.len() <= 253 && s.is_ascii());
            }
            if qualified_name(&s).is_ok() {
                prop_assert!(s.len() <= 253 + 1 + 63 && s.is_ascii());
            }
            if label_value(&s).is_ok() {
                prop_assert!(s.len() <= 63 && s.is_ascii());
            }
        }
    }

    #[test]
    fn labels() {
        for ok in ["a", "a-b", "0", "abc123", &"a".repeat(63)] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        for ok in ["a", "a.b", "example.com", "a-1.b-2", &"a".repeat(253)] {
            assert!(dns1123_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b", &"a".repeat(254)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "A_b.c-D",
            "example.com/name",
            "k8s.io/Foo_bar",
            &"a".repeat(63),
        ] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a/b/c",
            "_a",
            "a_",
            "Example.com/a",
            &"a".repeat(64),
        ] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A.b_c-d", &"a".repeat(63)] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }
}
