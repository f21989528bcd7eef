//! The RBAC policy parser must never panic: any bytes either parse or give an error. Anything
//! that parses must also be evaluable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rbac::{Attributes, CompiledPolicy, Policy, authorize};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = Policy::from_documents([("fuzz.yaml", text)]) {
        let a = Attributes {
            user: "alice".into(),
            groups: vec!["system:authenticated".into()],
            verb: "get".into(),
            resource_request: true,
            resource: "pods".into(),
            namespace: "default".into(),
            ..Attributes::default()
        };
        assert_eq!(authorize(&policy, &a).allowed, CompiledPolicy::new(&policy).authorize(&a).allowed);
    }
});
