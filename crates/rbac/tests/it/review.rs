//! who-can is exact (agrees with brute force over every subject), and the rules review agrees
//! with per-request decisions.

use portcullis_rbac::evaluate::rule_allows;
use portcullis_rbac::review::{rules_review, who_can};
use portcullis_rbac::v1::PolicyRule;
use portcullis_rbac::{Attributes, Policy, authorize};
use proptest::prelude::*;

use crate::index::{policy, request};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn who_can_agrees_with_brute_force_over_subjects(p in policy(), a in request()) {
        let answers = who_can(&p, &a);
        let mut users: Vec<String> = p.cluster_role_bindings.values().flat_map(|b| b.subjects.clone())
            .chain(p.role_bindings.values().flat_map(|b| b.subjects.clone()))
            .filter(|s| s.kind == "User").map(|s| s.name).collect();
        users.extend(crate::index::USERS.iter().map(|s| (*s).to_owned()));
        for u in users {
            let alone = Attributes { user: u.clone(), groups: vec![], ..a.clone() };
            let listed = answers.iter().any(|w| (w.kind == "User" && w.name == u)
                || (w.kind == "ServiceAccount" && u == format!("system:serviceaccount:{}:{}", w.namespace, w.name)));
            prop_assert_eq!(authorize(&p, &alone).allowed, listed, "user {}", u);
        }
        for g in crate::index::GROUPS {
            let member = Attributes { user: "nobody-in-particular".into(), groups: vec![(*g).to_owned()], ..a.clone() };
            let listed = answers.iter().any(|w| w.kind == "Group" && w.name == *g);
            prop_assert_eq!(authorize(&p, &member).allowed, listed, "group {}", g);
        }
    }

    #[test]
    fn the_rules_review_agrees_with_decisions(p in policy(), a in request()) {
        // Non-resource requests are cluster-scoped: compare with the cluster-wide review.
        let ns = if a.resource_request { a.namespace.clone() } else { String::new() };
        let review = rules_review(&p, &a.user, &a.groups, &ns);
        let rules: Vec<PolicyRule> = review.resource_rules.iter().map(|r| PolicyRule {
            verbs: r.verbs.clone(), api_groups: r.api_groups.clone(), resources: r.resources.clone(), resource_names: r.resource_names.clone(), non_resource_urls: vec![],
        }).chain(review.non_resource_rules.iter().map(|r| PolicyRule { verbs: r.verbs.clone(), non_resource_urls: r.non_resource_urls.clone(), ..PolicyRule::default() })).collect();
        let by_review = rules.iter().any(|r| rule_allows(r, &a));
        prop_assert_eq!(authorize(&p, &a).allowed, by_review);
    }
}

#[test]
fn a_binding_to_a_missing_role_makes_the_review_incomplete() {
    let p = Policy::from_documents([(
        "t.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ghost}\nsubjects: [{kind: User, name: alice}]\n",
    )])
    .unwrap();
    let r = rules_review(&p, "alice", &[], "ns-a");
    assert!(r.incomplete);
    assert_eq!(
        r.evaluation_error,
        "clusterrole.rbac.authorization.k8s.io \"ghost\" not found"
    );
}
