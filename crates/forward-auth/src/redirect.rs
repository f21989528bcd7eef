//! Where a browser may be sent after login or logout (`rd`): a path on the current origin, or
//! an absolute `http(s)` URL whose host is allowed. Every form that browsers read differently
//! from parsers is refused rather than repaired: `//host` and `/\host` (scheme-relative),
//! backslashes, raw or percent-encoded whitespace and control characters (`%09 %0a %0b %0d`),
//! user info (`https://allowed@evil`), schemes other than http/https (`javascript:`), missing
//! `//` after the scheme (`https:evil`), and a downgrade from https to http.

use url::Url;

/// Longest redirect target accepted.
pub const MAX_REDIRECT_LEN: usize = 2048;

/// The origin a request was made to: scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and optional port as sent (`app.example.com:8443`), lower case.
    pub authority: String,
}

impl Origin {
    /// `scheme://authority`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The host without port and without a trailing dot.
    pub fn host(&self) -> &str {
        host_of(&self.authority)
    }
}

/// The host of an authority: port and one trailing dot cut, IPv6 brackets kept.
pub fn host_of(authority: &str) -> &str {
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .and_then(|i| authority.get(..=i))
            .unwrap_or(authority)
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Whether `host` (lower case, optional port in `port`) is allowed by `domains`: `example.com`
/// matches that host, `.example.com` hosts under it; an entry with `:port` needs that port.
pub fn domain_allowed(domains: &[String], host: &str, port: Option<u16>) -> bool {
    domains.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let (name, want_port) = match entry.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || entry.starts_with('[') => match p.parse() {
                Ok(p) => (n.to_owned(), Some(p)),
                Err(_) => (entry.clone(), None),
            },
            _ => (entry.clone(), None),
        };
        if want_port.is_some() && want_port != port {
            return false;
        }
        match name.strip_prefix('.') {
            Some(parent) => host.len() > parent.len() + 1 && host.ends_with(&format!(".{parent}")),
            None => host == name,
        }
    })
}

/// Why a redirect target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

fn encoded_danger(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(3).any(|w| {
        let [p, h, l] = [w.first(), w.get(1), w.get(2)].map(|c| c.copied().unwrap_or(0));
        if p != b'%' {
            return false;
        }
        let v = match (char::from(h).to_digit(16), char::from(l).to_digit(16)) {
            (Some(h), Some(l)) => h * 16 + l,
            _ => return false,
        };
        // controls, space, backslash, DEL, and an encoded `/` that could start `//`
        v < 0x21 || v == 0x5c || v == 0x7f
    })
}

/// Checks `rd` against the request's `origin` and the allowed `domains` (the origin's own host
/// is always allowed); returns the absolute URL to redirect to.
pub fn check(rd: &str, origin: &Origin, domains: &[String]) -> Result<String, Refused> {
    if rd.is_empty() {
        return Ok(format!("{}/", origin.url()));
    }
    if rd.len() > MAX_REDIRECT_LEN {
        return Err(Refused("the redirect target is too long"));
    }
    if rd
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(Refused(
            "the redirect target holds whitespace, a control character or a backslash",
        ));
    }
    if encoded_danger(rd) {
        return Err(Refused(
            "the redirect target holds an encoded control character, space or backslash",
        ));
    }
    let absolute = if rd.starts_with('/') {
        if rd.starts_with("//") || rd.to_ascii_lowercase().starts_with("/%2f") {
            return Err(Refused(
                "the redirect target is scheme-relative (`//host`); give a path or a full URL",
            ));
        }
        format!("{}{rd}", origin.url())
    } else {
        let lower = rd.get(..8).unwrap_or(rd).to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(Refused(
                "the redirect target must be a path or an http(s):// URL",
            ));
        }
        rd.to_owned()
    };
    let url = Url::parse(&absolute).map_err(|_| Refused("the redirect target is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused(
            "the redirect target carries user info (`user@host`)",
        ));
    }
    if url.scheme() != "https" && !(url.scheme() == "http" && origin.scheme == "http") {
        return Err(Refused(
            "the redirect target must use https (or http when the request did)",
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(Refused("the redirect target has no host"));
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let same_origin = host == origin.host()
        && url.port_or_known_default() == origin_port(origin)
        && url.scheme() == origin.scheme;
    if !same_origin && !domain_allowed(domains, &host, url.port_or_known_default()) {
        return Err(Refused(
            "the redirect target's host is not among allowedRedirectDomains",
        ));
    }
    let mut url = url;
    url.set_fragment(None);
    Ok(url.to_string())
}

fn origin_port(origin: &Origin) -> Option<u16> {
    let authority = &origin.authority;
    let after_host = if authority.starts_with('[') {
        authority.find(']').and_then(|i| authority.get(i + 1..))
    } else {
        authority.rfind(':').and_then(|i| authority.get(i..))
    };
    match after_host.and_then(|s| s.strip_prefix(':')) {
        Some(p) => p.parse().ok(),
        None => match origin.scheme.as_str() {
            "https" => Some(443),
            _ => Some(80),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            scheme: "https".into(),
            authority: "app.example.com".into(),
        }
    }

    #[test]
    fn allowed_targets() {
        let d = vec![".example.com".to_owned(), "other.org".to_owned()];
        for (rd, want) in [
            ("", "https://app.example.com/"),
            ("/x?y=1", "https://app.example.com/x?y=1"),
            ("https://app.example.com/a", "https://app.example.com/a"),
            (
                "https://grafana.example.com/d",
                "https://grafana.example.com/d",
            ),
            ("https://other.org/", "https://other.org/"),
            ("HTTPS://Other.Org/", "https://other.org/"),
        ] {
            assert_eq!(check(rd, &origin(), &d).unwrap(), want, "{rd}");
        }
    }

    #[test]
    fn domain_rules() {
        let d = vec![".example.com".to_owned(), "exact.org:8443".to_owned()];
        assert!(domain_allowed(&d, "a.example.com", Some(443)));
        assert!(!domain_allowed(&d, "example.com", Some(443)));
        assert!(!domain_allowed(&d, "evilexample.com", Some(443)));
        assert!(domain_allowed(&d, "exact.org", Some(8443)));
        assert!(!domain_allowed(&d, "exact.org", Some(443)));
    }

    #[test]
    fn host_of_cuts_port_and_dot() {
        assert_eq!(host_of("a.example.com:80"), "a.example.com");
        assert_eq!(host_of("a.example.com."), "a.example.com");
        assert_eq!(host_of("[::1]:80"), "[::1]");
    }
}
