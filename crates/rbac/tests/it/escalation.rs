//! `covers` as kube-apiserver's `validation.Covers`: named cases, and properties (reflexive,
//! transitive, and agreeing with per-request decisions).

use portcullis_rbac::escalation::covers;
use portcullis_rbac::v1::PolicyRule;
use proptest::prelude::*;

fn r(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        resource_names: v(names),
        non_resource_urls: vec![],
    }
}

fn urls(verbs: &[&str], u: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        non_resource_urls: u.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

#[test]
fn stars_cover_everything_of_their_dimension() {
    assert!(
        covers(
            &[r(&["*"], &["*"], &["*"], &[])],
            &[r(
                &["get", "delete"],
                &["apps"],
                &["deployments", "pods/log"],
                &["x"]
            )]
        )
        .0
    );
    assert!(
        !covers(
            &[r(&["get"], &["*"], &["*"], &[])],
            &[r(&["delete"], &[""], &["pods"], &[])]
        )
        .0
    );
}

#[test]
fn a_rule_is_covered_by_the_union_of_several() {
    let owner = [
        r(&["get"], &[""], &["pods"], &[]),
        r(&["list"], &[""], &["pods"], &[]),
    ];
    assert!(covers(&owner, &[r(&["get", "list"], &[""], &["pods"], &[])]).0);
    let (ok, missing) = covers(&owner, &[r(&["get", "watch"], &[""], &["pods"], &[])]);
    assert!(!ok);
    assert_eq!(missing, [r(&["watch"], &[""], &["pods"], &[])]);
}

#[test]
fn star_slash_subresource_covers_that_subresource_of_anything() {
    assert!(
        covers(
            &[r(&["get"], &[""], &["*/log"], &[])],
            &[r(&["get"], &[""], &["pods/log"], &[])]
        )
        .0
    );
    assert!(
        !covers(
            &[r(&["get"], &[""], &["*/log"], &[])],
            &[r(&["get"], &[""], &["pods"], &[])]
        )
        .0
    );
}

#[test]
fn resource_names_narrow_what_is_covered() {
    // An owner limited to names does not cover a rule for all names.
    assert!(
        !covers(
            &[r(&["get"], &[""], &["secrets"], &["a"])],
            &[r(&["get"], &[""], &["secrets"], &[])]
        )
        .0
    );
    assert!(
        covers(
            &[r(&["get"], &[""], &["secrets"], &["a", "b"])],
            &[r(&["get"], &[""], &["secrets"], &["a"])]
        )
        .0
    );
    assert!(
        covers(
            &[r(&["get"], &[""], &["secrets"], &[])],
            &[r(&["get"], &[""], &["secrets"], &["a"])]
        )
        .0
    );
}

#[test]
fn non_resource_urls_cover_by_prefix_star() {
    assert!(
        covers(
            &[urls(&["get"], &["/logs/*"])],
            &[urls(&["get"], &["/logs/a", "/logs/"])]
        )
        .0
    );
    assert!(
        !covers(
            &[urls(&["get"], &["/logs/*"])],
            &[urls(&["get"], &["/metrics"])]
        )
        .0
    );
}

fn rule() -> impl Strategy<Value = PolicyRule> {
    let pick = |xs: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(xs).prop_map(str::to_owned), 1..3)
    };
    prop_oneof![
        (
            pick(&["get", "list", "*"]),
            pick(&["", "apps", "*"]),
            pick(&["pods", "pods/log", "*/log", "*"]),
            prop::collection::vec(
                prop::sample::select(&["a", "b"][..]).prop_map(str::to_owned),
                0..2
            )
        )
            .prop_map(
                |(verbs, api_groups, resources, resource_names)| PolicyRule {
                    verbs,
                    api_groups,
                    resources,
                    resource_names,
                    non_resource_urls: vec![]
                }
            ),
        (pick(&["get", "*"]), pick(&["/a", "/a/*", "*"])).prop_map(|(verbs, non_resource_urls)| {
            PolicyRule {
                verbs,
                non_resource_urls,
                ..PolicyRule::default()
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn covers_is_reflexive(rules in prop::collection::vec(rule(), 0..4)) {
        prop_assert!(covers(&rules, &rules).0);
    }

    #[test]
    fn covers_is_transitive(a in prop::collection::vec(rule(), 0..4), b in prop::collection::vec(rule(), 0..4), c in prop::collection::vec(rule(), 0..4)) {
        if covers(&a, &b).0 && covers(&b, &c).0 {
            prop_assert!(covers(&a, &c).0);
        }
    }
}
