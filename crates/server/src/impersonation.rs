//! User impersonation, as kube-apiserver does it (`kubectl --as`, `--as-group`, `--as-uid`):
//! the `Impersonate-*` headers name another identity, and the authenticated user must be
//! allowed the `impersonate` verb on each part of it — `users` (or `serviceaccounts` for a
//! service account's user name), `groups`, `uids` and `userextras/KEY` — before the request
//! goes on as that identity. Without the headers nothing changes.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::authn::UserInfo;
use crate::authz::{Authorizer, RequestAttributes};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Most impersonated groups and extra values accepted in one request.
const MAX_VALUES: usize = 256;

/// Why impersonation was refused.
#[derive(Debug)]
pub enum Refused {
    /// The headers are malformed (400).
    BadRequest(String),
    /// The requester may not impersonate this (403); the attributes of the denied check.
    Forbidden(Box<RequestAttributes>),
}

fn values<'h>(headers: &'h HeaderMap, name: &str) -> Result<Vec<&'h str>, Refused> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        let v = v
            .to_str()
            .map_err(|_| Refused::BadRequest(format!("header {name} is not valid text")))?;
        out.push(v);
        if out.len() > MAX_VALUES {
            return Err(Refused::BadRequest(format!("too many {name} headers")));
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn check(
    authz: &dyn Authorizer,
    requester: &UserInfo,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> Result<(), Refused> {
    let attrs = RequestAttributes {
        user: requester.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        api_version: String::new(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        path: String::new(),
    };
    if authz.authorize(&attrs).allowed {
        Ok(())
    } else {
        Err(Refused::Forbidden(Box::new(attrs)))
    }
}

/// The identity a request acts as: `requester` itself without `Impersonate-*` headers, or the
/// impersonated identity once every part of it is authorized.
pub fn resolve(
    authz: &dyn Authorizer,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, Refused> {
    let users = values(headers, USER)?;
    let groups = values(headers, GROUP)?;
    let uids = values(headers, UID)?;
    let extra_keys: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|k| k.starts_with(EXTRA_PREFIX))
        .collect();
    if users.is_empty() {
        if !groups.is_empty() || !uids.is_empty() || !extra_keys.is_empty() {
            return Err(Refused::BadRequest(
                "impersonating groups, a uid or extra fields needs Impersonate-User too".into(),
            ));
        }
        return Ok(requester);
    }
    let [user] = users.as_slice() else {
        return Err(Refused::BadRequest(
            "only one Impersonate-User header is allowed".into(),
        ));
    };
    let user = (*user).to_owned();
    if user.is_empty() {
        return Err(Refused::BadRequest("Impersonate-User is empty".into()));
    }
    let mut impersonated = UserInfo {
        name: user.clone(),
        uid: String::new(),
        groups: Vec::new(),
        extra: BTreeMap::new(),
    };
    // A service account's user name is checked against the serviceaccounts resource.
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => {
            check(
                authz,
                &requester,
                "",
                "serviceaccounts",
                "",
                namespace,
                name,
            )?;
            if groups.is_empty() {
                impersonated.groups.push("system:serviceaccounts".into());
                impersonated
                    .groups
                    .push(format!("system:serviceaccounts:{namespace}"));
            }
        }
        None => check(authz, &requester, "", "users", "", "", &user)?,
    }
    for group in &groups {
        check(authz, &requester, "", "groups", "", "", group)?;
        impersonated.groups.push((*group).to_owned());
    }
    if let Some(uid) = uids.first() {
        if uids.len() > 1 {
            return Err(Refused::BadRequest(
                "only one Impersonate-Uid header is allowed".into(),
            ));
        }
        check(
            authz,
            &requester,
            "authentication.k8s.io",
            "uids",
            "",
            "",
            uid,
        )?;
        impersonated.uid = (*uid).to_owned();
    }
    for header in extra_keys {
        let key = percent_decode(header.trim_start_matches(EXTRA_PREFIX));
        for value in values(headers, header)? {
            check(
                authz,
                &requester,
                "authentication.k8s.io",
                "userextras",
                &key,
                "",
                value,
            )?;
            impersonated
                .extra
                .entry(key.clone())
                .or_default()
                .push(value.to_owned());
        }
    }
    // As kube-apiserver: everyone but the anonymous user is authenticated.
    if user != "system:anonymous"
        && !impersonated
            .groups
            .iter()
            .any(|g| g == "system:authenticated")
    {
        impersonated.groups.push("system:authenticated".into());
    }
    tracing::info!(
        user = %requester.name,
        impersonated = %impersonated.name,
        "impersonation"
    );
    Ok(impersonated)
}
