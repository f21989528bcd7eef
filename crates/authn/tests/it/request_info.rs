//! RequestInfo as k8s.io/apiserver's RequestInfoFactory: a table, and every request kubectl
//! sent in the recordings of `shared/kube-apiserver-recordings`.

use http::Method;
use portcullis_authn::{RequestInfo, RequestInfoError, UserInfo, Verb};

/// `verb|group|namespace|resource|subresource|name` for resource requests,
/// `verb path` for the others.
fn render(info: &RequestInfo) -> String {
    if info.is_resource_request() {
        format!(
            "{}|{}|{}|{}|{}|{}",
            info.verb(),
            info.api_group(),
            info.namespace(),
            info.resource(),
            info.subresource(),
            info.name()
        )
    } else {
        format!("{} {}", info.verb(), info.path())
    }
}

fn parse(method: &str, url: &str) -> Result<RequestInfo, RequestInfoError> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    RequestInfo::parse(&Method::from_bytes(method.as_bytes()).unwrap(), path, query)
}

#[test]
fn table() {
    let cases: &[(&str, &str, &str)] = &[
        // Non-resource paths: the verb is the lower-cased method.
        ("GET", "/", "get /"),
        ("GET", "/healthz", "get /healthz"),
        ("GET", "/metrics", "get /metrics"),
        ("GET", "/version", "get /version"),
        ("GET", "/api", "get /api"),
        ("GET", "/api/v1", "get /api/v1"),
        ("GET", "/apis", "get /apis"),
        ("GET", "/apis/apps", "get /apis/apps"),
        ("GET", "/apis/apps/v1", "get /apis/apps/v1"),
        ("POST", "/apis", "post /apis"),
        ("PUT", "/logs/x", "put /logs/x"),
        ("HEAD", "/healthz", "head /healthz"),
        ("OPTIONS", "/openapi/v2", "options /openapi/v2"),
        ("DELETE", "/not/api", "delete /not/api"),
        (
            "GET",
            "/openapi/v3/apis/apps/v1",
            "get /openapi/v3/apis/apps/v1",
        ),
        // Core group.
        ("GET", "/api/v1/pods", "list|||pods||"),
        ("GET", "/api/v1/namespaces", "list|||namespaces||"),
        (
            "GET",
            "/api/v1/namespaces/other",
            "get||other|namespaces||other",
        ),
        ("GET", "/api/v1/namespaces/other/pods", "list||other|pods||"),
        (
            "GET",
            "/api/v1/namespaces/other/pods/foo",
            "get||other|pods||foo",
        ),
        (
            "HEAD",
            "/api/v1/namespaces/other/pods/foo",
            "get||other|pods||foo",
        ),
        (
            "GET",
            "/api/v1/namespaces/other/pods/foo/log",
            "get||other|pods|log|foo",
        ),
        (
            "POST",
            "/api/v1/namespaces/other/pods",
            "create||other|pods||",
        ),
        (
            "PUT",
            "/api/v1/namespaces/other/pods/foo",
            "update||other|pods||foo",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/other/pods/foo",
            "patch||other|pods||foo",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/other/pods/foo",
            "delete||other|pods||foo",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/other/pods",
            "deletecollection||other|pods||",
        ),
        (
            "PUT",
            "/api/v1/namespaces/other/finalize",
            "update||other|namespaces|finalize|other",
        ),
        (
            "PUT",
            "/api/v1/namespaces/other/status",
            "update||other|namespaces|status|other",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/%66oo",
            "get||ns|pods||foo",
        ),
        ("GET", "/api/v1/nodes/n1/", "get|||nodes||n1"),
        // The path is decoded before it is split, as Go's URL.Path.
        ("GET", "/api/v1/namespaces/a%2Fb/pods", "get||a|b||pods"),
        // Named groups.
        (
            "GET",
            "/apis/apps/v1/deployments",
            "list|apps||deployments||",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            "get|apps|ns|deployments|scale|web",
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/web/status",
            "update|apps|ns|deployments|status|web",
        ),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
            "get|rbac.authorization.k8s.io||clusterroles||admin",
        ),
        (
            "DELETE",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
            "deletecollection|rbac.authorization.k8s.io|ns|rolebindings||",
        ),
        // watch from the query, as the list options decoder reads it.
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=true",
            "watch||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=1",
            "watch||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=false",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=0",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=FALSE",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=",
            "watch||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?watch=yes",
            "watch||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/foo?watch=true",
            "get||ns|pods||foo",
        ),
        // The legacy /watch/ prefix.
        ("GET", "/api/v1/watch/pods", "watch|||pods||"),
        (
            "GET",
            "/api/v1/watch/namespaces/ns/pods",
            "watch||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/watch/namespaces/ns/pods/foo",
            "watch||ns|pods||foo",
        ),
        (
            "GET",
            "/apis/apps/v1/watch/namespaces/ns/deployments",
            "watch|apps|ns|deployments||",
        ),
        // A field selector on metadata.name names the object.
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name%3Dfoo",
            "list||ns|pods||foo",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name==foo&watch=true",
            "watch||ns|pods||foo",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=status.phase=Running,metadata.name=foo",
            "list||ns|pods||foo",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name!=foo",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=a/b",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=..",
            "list||ns|pods||",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods?limit=abc&fieldSelector=metadata.name=foo",
            "list||ns|pods||",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/pods?fieldSelector=metadata.name=foo",
            "deletecollection||ns|pods||",
        ),
        // proxy: the legacy prefix takes no subresource; the subresource form does.
        ("GET", "/api/v1/proxy/nodes/n1", "proxy|||nodes||n1"),
        (
            "GET",
            "/api/v1/proxy/namespaces/ns/pods/p/some/path",
            "proxy||ns|pods||p",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/p/proxy/some/path",
            "get||ns|pods|proxy|p",
        ),
        (
            "POST",
            "/api/v1/namespaces/ns/services/s:80/proxy",
            "create||ns|services|proxy|s:80",
        ),
        // An HTTP method without a verb leaves it empty: never delete.
        (
            "OPTIONS",
            "/api/v1/namespaces/ns/pods/foo",
            "||ns|pods||foo",
        ),
        (
            "CONNECT",
            "/api/v1/namespaces/ns/pods/foo/exec",
            "||ns|pods|exec|foo",
        ),
        ("PURGE", "/api/v1/namespaces/ns/pods", "||ns|pods||"),
        // Empty segments are kept, as Go's `strings.Split` keeps them: the resource is then
        // empty (only a `*` rule matches it); leading and trailing slashes are trimmed.
        ("GET", "/api/v1//name", "get|||||name"),
        ("GET", "//api/v1/pods//", "list|||pods||"),
        ("GET", "/api/v1/namespaces//pods/p", "get|||pods||p"),
    ];
    assert!(cases.len() >= 40);
    for (method, url, want) in cases {
        let info = parse(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        assert_eq!(render(&info), *want, "{method} {url}");
    }
}

#[test]
fn an_unmatched_method_is_never_delete() {
    for method in ["OPTIONS", "CONNECT", "TRACE", "PURGE", "LINK"] {
        for path in [
            "/api/v1/namespaces/ns/pods/foo",
            "/api/v1/namespaces/ns/pods",
        ] {
            let info = parse(method, path).unwrap();
            assert_eq!(info.verb(), &Verb::Unknown, "{method} {path}");
            assert_eq!(info.verb().as_str(), "");
        }
    }
}

#[test]
fn watch_or_proxy_without_a_resource_is_an_error() {
    for url in ["/api/v1/watch", "/api/v1/proxy", "/apis/apps/v1/watch/"] {
        assert!(
            matches!(parse("GET", url), Err(RequestInfoError::NoKind(_))),
            "{url}"
        );
    }
}

#[test]
fn attributes_for_a_user() {
    let user = UserInfo {
        name: "jane".into(),
        groups: vec!["devs".into(), "system:authenticated".into()],
        ..UserInfo::default()
    };
    let a = parse("GET", "/apis/apps/v1/namespaces/ns/deployments/web/scale")
        .unwrap()
        .attributes(&user);
    assert_eq!(
        (
            a.user.as_str(),
            a.verb.as_str(),
            a.api_group.as_str(),
            a.resource.as_str()
        ),
        ("jane", "get", "apps", "deployments")
    );
    assert_eq!(
        (
            a.subresource.as_str(),
            a.namespace.as_str(),
            a.name.as_str()
        ),
        ("scale", "ns", "web")
    );
    assert!(a.resource_request && a.path.is_empty());
    assert_eq!(a.groups, user.groups);
    let a = parse("GET", "/healthz").unwrap().attributes(&user);
    assert!(!a.resource_request);
    assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/healthz"));
}

/// The expected attributes of every request kubectl sent in the recordings.
fn recorded_expectation(method: &str, path: &str, query: &str) -> Option<&'static str> {
    let watch = query.split('&').any(|p| p == "watch=true");
    Some(match (method, path, watch) {
        ("GET", "/version" | "/api" | "/apis" | "/api/v1" | "/openapi/v3", _) => "get",
        ("GET", "/openapi/v3/apis/rbac.authorization.k8s.io/v1", _) => "get",
        ("GET", "/api/v1/namespaces/rec-k/pods", false) => "list||rec-k|pods||",
        ("GET", "/api/v1/namespaces/rec-k/pods", true) => "watch||rec-k|pods||",
        ("GET", "/api/v1/namespaces/rec-k", _) => "get||rec-k|namespaces||rec-k",
        ("GET", "/api/v1/namespaces/rec-k/pods/nopod", _) => "get||rec-k|pods||nopod",
        ("GET", "/api/v1/namespaces/rec-k/pods/web", _) => "get||rec-k|pods||web",
        ("GET", "/api/v1/namespaces/rec-k/pods/run", _) => "get||rec-k|pods||run",
        ("GET", "/api/v1/namespaces/rec-k/pods/web/exec", _) => "get||rec-k|pods|exec|web",
        ("POST", "/api/v1/namespaces/rec-k/pods/web/exec", _) => "create||rec-k|pods|exec|web",
        ("GET", "/api/v1/namespaces/rec-k/pods/run/exec", _) => "get||rec-k|pods|exec|run",
        ("POST", "/api/v1/namespaces/rec-k/pods/run/exec", _) => "create||rec-k|pods|exec|run",
        ("GET", "/api/v1/namespaces/rec-k/pods/run/portforward", _) => {
            "get||rec-k|pods|portforward|run"
        }
        ("POST", "/api/v1/namespaces/rec-k/pods/run/portforward", _) => {
            "create||rec-k|pods|portforward|run"
        }
        ("GET", "/api/v1/namespaces/rec-k/pods/run/log", _) => "get||rec-k|pods|log|run",
        ("GET", "/api/v1/namespaces/rec-k/pods/web/log", _) => "get||rec-k|pods|log|web",
        ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/rec-k/roles/kubectl-csa", _) => {
            "get|rbac.authorization.k8s.io|rec-k|roles||kubectl-csa"
        }
        ("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/rec-k/roles/kubectl-csa", _) => {
            "patch|rbac.authorization.k8s.io|rec-k|roles||kubectl-csa"
        }
        ("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/rec-k/roles/kubectl-ssa", _) => {
            "patch|rbac.authorization.k8s.io|rec-k|roles||kubectl-ssa"
        }
        ("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/rec-k/roles", _) => {
            "create|rbac.authorization.k8s.io|rec-k|roles||"
        }
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", _) => {
            "create|authorization.k8s.io||selfsubjectaccessreviews||"
        }
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", _) => {
            "create|authorization.k8s.io||selfsubjectrulesreviews||"
        }
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", _) => {
            "create|authentication.k8s.io||selfsubjectreviews||"
        }
        _ => return None,
    })
}

#[test]
fn every_request_kubectl_sent_in_the_recordings() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/kube-apiserver-recordings/kubectl-requests.jsonl"
    );
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{file}: {e}; shared/ must be beside the clone"));
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let (method, path) = (r["method"].as_str().unwrap(), r["path"].as_str().unwrap());
        let query = r["raw_query"].as_str().unwrap_or_default();
        let want = recorded_expectation(method, path, query)
            .unwrap_or_else(|| panic!("no expectation for {method} {path}?{query}"));
        let info = RequestInfo::parse(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            (!query.is_empty()).then_some(query),
        )
        .unwrap();
        let got = render(&info);
        if info.is_resource_request() {
            assert_eq!(got, want, "{method} {path}?{query}");
        } else {
            assert_eq!(got, format!("{want} {path}"), "{method} {path}?{query}");
        }
        seen += 1;
    }
    assert_eq!(seen, 77, "the README says 77 requests");
}
