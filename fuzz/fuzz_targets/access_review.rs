//! The protobuf decoder of access reviews (kubectl sends SubjectAccessReviews and
//! SelfSubjectAccessReviews as protobuf) must never panic on any body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [
        "SubjectAccessReview",
        "SelfSubjectAccessReview",
        "LocalSubjectAccessReview",
        "SelfSubjectRulesReview",
        "SelfSubjectReview",
    ] {
        let _ = portcullis_server::fuzzing::access_review(kind, data);
    }
});
