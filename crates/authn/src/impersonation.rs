//! User impersonation, as kube-apiserver's impersonation filter
//! (`k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`): the `Impersonate-*` headers name
//! another identity, and the requester must be allowed the `impersonate` verb on each part of
//! it — `users` (or `serviceaccounts` for a service account's name) and `groups` in the core
//! group, `uids` and `userextras/KEY` in `authentication.k8s.io` — before the request goes on
//! as that identity.

use std::collections::BTreeMap;

use portcullis_rbac::{Attributes, AttributesRef, Decision};

use crate::{SYSTEM_ANONYMOUS, SYSTEM_AUTHENTICATED, SYSTEM_UNAUTHENTICATED, UserInfo};

/// `Impersonate-User`.
pub const IMPERSONATE_USER: &str = "impersonate-user";
/// `Impersonate-Group` (repeatable).
pub const IMPERSONATE_GROUP: &str = "impersonate-group";
/// `Impersonate-Uid`.
pub const IMPERSONATE_UID: &str = "impersonate-uid";
/// `Impersonate-Extra-KEY` (repeatable; KEY percent-encoded).
pub const IMPERSONATE_EXTRA_PREFIX: &str = "impersonate-extra-";

/// Most impersonated values (groups, extra values) accepted in one request.
const MAX_VALUES: usize = 256;

/// Decides whether a requester may do something: the front end's authorizer.
pub trait Authorize {
    /// Allowed or not; an error inside must deny.
    fn authorize(&self, attributes: &Attributes) -> Decision;

    /// The decision of [`Authorize::authorize`] when it is an allow that the authorizer can
    /// give from borrowed attributes, with nothing copied (the request path asks this first);
    /// `None` (the default) to be asked `authorize`. A shortcut, never another decision.
    fn allow_now(&self, _attributes: &AttributesRef<'_>) -> Option<Decision> {
        None
    }

    /// Whether [`Authorize::allow_now`] is an allow, for a caller with no use for its reason
    /// (an authorizer can answer it without writing one).
    fn allows_now(&self, attributes: &AttributesRef<'_>) -> bool {
        self.allow_now(attributes).is_some()
    }
}

/// An authorizer that asks someone else and waits for the answer (the API proxy asks the
/// cluster with a SubjectAccessReview); an error inside must deny.
#[async_trait::async_trait]
pub trait AuthorizeRemote: Send + Sync {
    /// Allowed or not.
    async fn authorize(&self, attributes: &Attributes) -> Decision;
}

impl<F: Fn(&Attributes) -> Decision> Authorize for F {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        self(attributes)
    }
}

/// The outcome of impersonation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonated {
    /// The identity the request acts as.
    pub user: UserInfo,
    /// The authenticated requester, when it impersonated someone (for audit).
    pub original: Option<UserInfo>,
}

/// Why impersonation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// The headers are malformed (kube-apiserver answers 500 for groups without a user; a
    /// front end may answer 400).
    #[error("{0}")]
    Invalid(String),
    /// The requester may not impersonate this (403); the attributes of the denied check.
    #[error("User {:?} cannot impersonate resource {:?} in API group {:?}", .0.user, .0.resource, .0.api_group)]
    Forbidden(Box<Attributes>),
}

fn values<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Result<Vec<&'h str>, ImpersonationError> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        out.push(v.to_str().map_err(|_| {
            ImpersonationError::Invalid(format!("header {name} is not valid text"))
        })?);
        if out.len() > MAX_VALUES {
            return Err(ImpersonationError::Invalid(format!(
                "more than {MAX_VALUES} {name} values"
            )));
        }
    }
    Ok(out)
}

/// One checked part of the impersonated identity.
struct Check<'a> {
    api_group: &'a str,
    resource: &'a str,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
}

fn check_attributes(requester: &UserInfo, c: &Check<'_>) -> Attributes {
    Attributes {
        user: requester.name.clone(),
        groups: requester.groups.clone(),
        extra: requester.extra.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        api_group: c.api_group.into(),
        resource: c.resource.into(),
        subresource: c.subresource.into(),
        namespace: c.namespace.into(),
        name: c.name.into(),
        path: String::new(),
    }
}

/// Go's `url.PathUnescape`, as kube-apiserver's `unescapeExtraKey`: `%XX` decoded; a malformed
/// escape (or bytes that are not UTF-8) keeps the key as sent.
fn path_unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return raw.to_owned();
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_or_else(|_| raw.to_owned(), |k| k.into_owned())
}

/// The identity a request acts as: `requester` itself without `Impersonate-*` headers, or the
/// impersonated identity once every part of it is authorized for `requester` (user or service
/// account first, then each group, each extra value, the uid; the first denial refuses).
///
/// As kube-apiserver: a service account's user name (`system:serviceaccount:NS:NAME`) is
/// checked as `serviceaccounts` NAME in NS and, without impersonated groups, gets the groups
/// `system:serviceaccounts` and `system:serviceaccounts:NS`; `system:authenticated` is added
/// unless the user is `system:anonymous` (which gets `system:unauthenticated`) or a group
/// given is already one of the two; groups, uid and extra need a user; extra keys are
/// lower-cased, then percent-decoded. Several `Impersonate-User` or `Impersonate-Uid` headers
/// are refused rather than reading only the first.
///
/// # Errors
///
/// [`ImpersonationError::Invalid`] for malformed headers, [`ImpersonationError::Forbidden`]
/// for the first denied check.
pub fn impersonate(
    authz: &dyn Authorize,
    requester: UserInfo,
    headers: &http::HeaderMap,
) -> Result<Impersonated, ImpersonationError> {
    let Some(request) = ImpersonationRequest::from_headers(&requester, headers)? else {
        return Ok(Impersonated {
            user: requester,
            original: None,
        });
    };
    for attributes in request.checks {
        if !authz.authorize(&attributes).allowed {
            return Err(ImpersonationError::Forbidden(Box::new(attributes)));
        }
    }
    tracing::info!(user = %requester.name, impersonated = %request.user.name, "impersonation");
    Ok(Impersonated {
        user: request.user,
        original: Some(requester),
    })
}

/// [`impersonate`] with an authorizer that must ask someone else (a SubjectAccessReview to a
/// cluster, for the API proxy): the checks are asked in the same order, and the first denial
/// (or failure to get an answer) refuses.
///
/// # Errors
///
/// As [`impersonate`].
pub async fn impersonate_remote(
    authz: &dyn AuthorizeRemote,
    requester: UserInfo,
    headers: &http::HeaderMap,
) -> Result<Impersonated, ImpersonationError> {
    let Some(request) = ImpersonationRequest::from_headers(&requester, headers)? else {
        return Ok(Impersonated {
            user: requester,
            original: None,
        });
    };
    for attributes in request.checks {
        if !authz.authorize(&attributes).await.allowed {
            return Err(ImpersonationError::Forbidden(Box::new(attributes)));
        }
    }
    tracing::info!(user = %requester.name, impersonated = %request.user.name, "impersonation");
    Ok(Impersonated {
        user: request.user,
        original: Some(requester),
    })
}

/// What `Impersonate-*` headers ask: the identity to act as, and the `impersonate` checks the
/// requester must pass for it, in kube-apiserver's order (user or service account, each group,
/// each extra value, the uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonationRequest {
    /// The identity asked for, with the groups kube-apiserver adds.
    pub user: UserInfo,
    /// The attributes each to be authorized for the requester.
    pub checks: Vec<Attributes>,
}

impl ImpersonationRequest {
    /// The request the headers make, or `None` without `Impersonate-*` headers.
    ///
    /// # Errors
    ///
    /// [`ImpersonationError::Invalid`] for malformed headers.
    pub fn from_headers(
        requester: &UserInfo,
        headers: &http::HeaderMap,
    ) -> Result<Option<ImpersonationRequest>, ImpersonationError> {
        let users: Vec<&str> = values(headers, IMPERSONATE_USER)?
            .into_iter()
            .filter(|u| !u.is_empty())
            .collect();
        let groups = values(headers, IMPERSONATE_GROUP)?;
        let uids = values(headers, IMPERSONATE_UID)?;
        let mut extra_headers: Vec<&str> = headers
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|k| k.starts_with(IMPERSONATE_EXTRA_PREFIX))
            .collect();
        extra_headers.sort_unstable();
        let [user] = users.as_slice() else {
            if users.is_empty() {
                if !groups.is_empty() || !uids.is_empty() || !extra_headers.is_empty() {
                    return Err(ImpersonationError::Invalid(
                        "requested groups, a uid or extra fields without impersonating a user; \
                         add Impersonate-User"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            return Err(ImpersonationError::Invalid(
                "only one Impersonate-User header is allowed".into(),
            ));
        };
        if uids.len() > 1 {
            return Err(ImpersonationError::Invalid(
                "only one Impersonate-Uid header is allowed".into(),
            ));
        }
        let user = (*user).to_owned();
        let mut checks = Vec::new();
        let mut impersonated = UserInfo {
            name: user.clone(),
            ..UserInfo::default()
        };
        match user
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
        {
            Some((namespace, name)) => {
                checks.push(check_attributes(
                    requester,
                    &Check {
                        api_group: "",
                        resource: "serviceaccounts",
                        subresource: "",
                        namespace,
                        name,
                    },
                ));
                if groups.is_empty() {
                    impersonated.groups = vec![
                        "system:serviceaccounts".into(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            None => checks.push(check_attributes(
                requester,
                &Check {
                    api_group: "",
                    resource: "users",
                    subresource: "",
                    namespace: "",
                    name: &user,
                },
            )),
        }
        for group in &groups {
            checks.push(check_attributes(
                requester,
                &Check {
                    api_group: "",
                    resource: "groups",
                    subresource: "",
                    namespace: "",
                    name: group,
                },
            ));
            impersonated.groups.push((*group).to_owned());
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for header in extra_headers {
            let raw = header
                .get(IMPERSONATE_EXTRA_PREFIX.len()..)
                .unwrap_or_default();
            // Header names arrive lower-cased: as kube-apiserver, the key is lower-cased before
            // it is unescaped.
            let key = path_unescape(raw);
            for value in values(headers, header)? {
                checks.push(check_attributes(
                    requester,
                    &Check {
                        api_group: "authentication.k8s.io",
                        resource: "userextras",
                        subresource: &key,
                        namespace: "",
                        name: value,
                    },
                ));
                extra.entry(key.clone()).or_default().push(value.to_owned());
            }
        }
        impersonated.extra = extra;
        if let Some(uid) = uids.first() {
            checks.push(check_attributes(
                requester,
                &Check {
                    api_group: "authentication.k8s.io",
                    resource: "uids",
                    subresource: "",
                    namespace: "",
                    name: uid,
                },
            ));
            impersonated.uid = (*uid).to_owned();
        }
        if user == SYSTEM_ANONYMOUS {
            if !impersonated
                .groups
                .iter()
                .any(|g| g == SYSTEM_UNAUTHENTICATED)
            {
                impersonated.groups.push(SYSTEM_UNAUTHENTICATED.into());
            }
        } else if !impersonated
            .groups
            .iter()
            .any(|g| g == SYSTEM_AUTHENTICATED || g == SYSTEM_UNAUTHENTICATED)
        {
            impersonated.groups.push(SYSTEM_AUTHENTICATED.into());
        }
        Ok(Some(ImpersonationRequest {
            user: impersonated,
            checks,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::path_unescape;

    #[test]
    fn extra_keys_are_unescaped_as_go_path_unescape() {
        assert_eq!(path_unescape("example.com%2fteam"), "example.com/team");
        assert_eq!(path_unescape("a%41"), "aA");
        assert_eq!(path_unescape("a%2fb%zz"), "a%2fb%zz");
        assert_eq!(path_unescape("a%2"), "a%2");
        assert_eq!(path_unescape("plain"), "plain");
    }
}
