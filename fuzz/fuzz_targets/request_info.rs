//! RequestInfo parsing must never panic on any method, path and query, and what it returns
//! must be consistent: a resource request's parts start at its resource, no request becomes
//! `delete` unless the method is DELETE, and its borrowed authorizer attributes are its owned
//! ones.
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
        // The resource is the first part from it on (empty for an empty segment, as kube's).
        if info.is_resource_request()
            && let Some(first) = info.parts().next()
        {
            assert_eq!(first, info.resource());
        }
        if matches!(info.verb(), Verb::Delete | Verb::DeleteCollection) {
            assert_eq!(method, http::Method::DELETE);
        }
        // The borrowed attributes the authorizer is asked first are the owned ones.
        let user = portcullis_authn::UserInfo::default();
        assert_eq!(info.attributes_ref(&user).to_attributes(), info.attributes(&user));
    }
});
