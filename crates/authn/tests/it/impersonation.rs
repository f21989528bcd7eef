//! Impersonation as kube-apiserver's filter: each attribute authorized, groups need a user.

use std::sync::Mutex;

use portcullis_authn::{ImpersonationError, UserInfo, impersonate};
use portcullis_rbac::{Attributes, Decision};

fn requester() -> UserInfo {
    UserInfo {
        name: "admin".into(),
        groups: vec!["ops".into(), "system:authenticated".into()],
        ..UserInfo::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// An authorizer that records every check and denies the one check `deny` matches.
struct Recorder {
    checks: Mutex<Vec<Attributes>>,
    deny: Option<(&'static str, &'static str)>,
}

impl Recorder {
    fn new(deny: Option<(&'static str, &'static str)>) -> Recorder {
        Recorder {
            checks: Mutex::new(Vec::new()),
            deny,
        }
    }

    fn authorize(&self, a: &Attributes) -> Decision {
        self.checks.lock().unwrap().push(a.clone());
        let denied = self
            .deny
            .is_some_and(|(resource, name)| a.resource == resource && a.name == name);
        Decision {
            allowed: !denied,
            reason: String::new(),
        }
    }

    fn checks(&self) -> Vec<(String, String, String, String, String)> {
        self.checks
            .lock()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a.verb, "impersonate");
                assert_eq!(a.user, "admin");
                assert!(a.resource_request);
                (
                    a.api_group.clone(),
                    a.resource.clone(),
                    a.subresource.clone(),
                    a.namespace.clone(),
                    a.name.clone(),
                )
            })
            .collect()
    }
}

fn t(g: &str, r: &str, s: &str, ns: &str, n: &str) -> (String, String, String, String, String) {
    (g.into(), r.into(), s.into(), ns.into(), n.into())
}

#[test]
fn without_headers_the_requester_stays() {
    let r = Recorder::new(None);
    let out = impersonate(&|a: &Attributes| r.authorize(a), requester(), &headers(&[])).unwrap();
    assert_eq!(out.user, requester());
    assert_eq!(out.original, None);
    assert!(r.checks().is_empty());
}

#[test]
fn every_attribute_is_checked_and_the_original_user_kept() {
    let r = Recorder::new(None);
    let out = impersonate(
        &|a: &Attributes| r.authorize(a),
        requester(),
        &headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "qa"),
            ("Impersonate-Uid", "u-42"),
            ("Impersonate-Extra-Example.com%2fteam", "blue"),
            ("Impersonate-Extra-Example.com%2fteam", "red"),
            ("Impersonate-Extra-scopes", "view"),
        ]),
    )
    .unwrap();
    assert_eq!(out.user.name, "jane");
    assert_eq!(out.user.uid, "u-42");
    assert_eq!(out.user.groups, ["devs", "qa", "system:authenticated"]);
    assert_eq!(out.user.extra["example.com/team"], ["blue", "red"]);
    assert_eq!(out.user.extra["scopes"], ["view"]);
    assert_eq!(out.original, Some(requester()));
    assert_eq!(
        r.checks(),
        [
            t("", "users", "", "", "jane"),
            t("", "groups", "", "", "devs"),
            t("", "groups", "", "", "qa"),
            t(
                "authentication.k8s.io",
                "userextras",
                "example.com/team",
                "",
                "blue"
            ),
            t(
                "authentication.k8s.io",
                "userextras",
                "example.com/team",
                "",
                "red"
            ),
            t("authentication.k8s.io", "userextras", "scopes", "", "view"),
            t("authentication.k8s.io", "uids", "", "", "u-42"),
        ]
    );
}

#[test]
fn each_denied_attribute_refuses_the_request() {
    let all = [
        ("Impersonate-User", "jane"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Uid", "u-42"),
        ("Impersonate-Extra-scopes", "view"),
    ];
    for (resource, name) in [
        ("users", "jane"),
        ("groups", "devs"),
        ("uids", "u-42"),
        ("userextras", "view"),
    ] {
        let r = Recorder::new(Some((resource, name)));
        let e = impersonate(
            &|a: &Attributes| r.authorize(a),
            requester(),
            &headers(&all),
        )
        .unwrap_err();
        match e {
            ImpersonationError::Forbidden(a) => {
                assert_eq!((a.resource.as_str(), a.name.as_str()), (resource, name));
            }
            other => panic!("{resource}: {other:?}"),
        }
    }
}

#[test]
fn groups_uid_or_extra_without_a_user_are_refused() {
    for pair in [
        ("Impersonate-Group", "devs"),
        ("Impersonate-Uid", "u-1"),
        ("Impersonate-Extra-scopes", "view"),
    ] {
        let r = Recorder::new(None);
        let e = impersonate(
            &|a: &Attributes| r.authorize(a),
            requester(),
            &headers(&[pair]),
        )
        .unwrap_err();
        assert!(matches!(e, ImpersonationError::Invalid(_)), "{pair:?}");
        assert!(r.checks().is_empty(), "nothing authorized for {pair:?}");
    }
    let r = Recorder::new(None);
    let two_users = headers(&[("Impersonate-User", "a"), ("Impersonate-User", "b")]);
    assert!(matches!(
        impersonate(&|a: &Attributes| r.authorize(a), requester(), &two_users),
        Err(ImpersonationError::Invalid(_))
    ));
}

#[test]
fn a_service_account_is_checked_as_serviceaccounts_and_gets_its_groups() {
    let r = Recorder::new(None);
    let out = impersonate(
        &|a: &Attributes| r.authorize(a),
        requester(),
        &headers(&[("Impersonate-User", "system:serviceaccount:team-a:builder")]),
    )
    .unwrap();
    assert_eq!(
        r.checks(),
        [t("", "serviceaccounts", "", "team-a", "builder")]
    );
    assert_eq!(
        out.user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
    // Denied as a service account.
    let r = Recorder::new(Some(("serviceaccounts", "builder")));
    assert!(matches!(
        impersonate(
            &|a: &Attributes| r.authorize(a),
            requester(),
            &headers(&[("Impersonate-User", "system:serviceaccount:team-a:builder")]),
        ),
        Err(ImpersonationError::Forbidden(_))
    ));
}

#[test]
fn anonymous_is_not_authenticated() {
    let r = Recorder::new(None);
    let out = impersonate(
        &|a: &Attributes| r.authorize(a),
        requester(),
        &headers(&[("Impersonate-User", "system:anonymous")]),
    )
    .unwrap();
    assert_eq!(out.user.groups, ["system:unauthenticated"]);
    // A user impersonated with system:unauthenticated gets no system:authenticated.
    let out = impersonate(
        &|a: &Attributes| r.authorize(a),
        requester(),
        &headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "system:unauthenticated"),
        ]),
    )
    .unwrap();
    assert_eq!(out.user.groups, ["system:unauthenticated"]);
}
