//! RequestInfo parsing must never panic on any method, path and query, and what it returns
//! must be consistent: a resource request has a resource, and no request becomes `delete`
//! unless the method is DELETE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_authn::{RequestInfo, Verb};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "PURGE",
];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let method =
        http::Method::from_bytes(METHODS[usize::from(m) % METHODS.len()].as_bytes()).unwrap();
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    if let Ok(info) = RequestInfo::parse(&method, path, query) {
        if info.is_resource_request {
            assert!(!info.resource.is_empty() || info.parts.is_empty());
        }
        if matches!(info.verb(), Verb::Delete | Verb::DeleteCollection) {
            assert_eq!(method, http::Method::DELETE);
        }
        let _ = info.attributes(&portcullis_authn::UserInfo::default());
    }
});
