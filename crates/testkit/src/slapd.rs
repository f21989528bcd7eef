//! A real OpenLDAP `slapd` on free loopback ports, with a generated `slapd.conf`, a test CA
//! and a fixture directory (users, groups, a nested group, a disabled user, and names full
//! of LDAP special characters and non-ASCII letters).
//!
//! Two listeners: `ldap://` (plain, and StartTLS) and `ldaps://`, both with a serving
//! certificate for 127.0.0.1 issued by a CA generated for this instance
//! ([`Slapd::ca_pem`]).
//!
//! The fixture, under `dc=example,dc=org`:
//!
//! | entry | password | notes |
//! |---|---|---|
//! | `cn=svc` | `svc-secret` | the service account for searches |
//! | `uid=alice,ou=people` | `alice-pw` | `mail: alice@example.org`, in `admins`, `devs` |
//! | `uid=bob,ou=people` | `bob-pw` | in `ops` (nested in `admins`) |
//! | `uid=dave,ou=people` | `dave-pw` | `employeeType: disabled` |
//! | `uid=a*()\b,ou=people` | `star-pw` | filter specials in the uid; in `specials` |
//! | `uid=c,+"<>;=d,ou=people` | `comma-pw` | DN specials in the uid; in `specials` |
//! | `uid=jürgen,ou=people` | `jürgen-pw` | non-ASCII; `cn: Jürgen Groß`; in `intl` |
//!
//! Groups under `ou=groups`: `admins` (groupOfNames: alice and the group `ops`), `ops`
//! (groupOfNames: bob), `specials` (groupOfNames: the two special users), `intl`
//! (groupOfNames: jürgen), `devs` (posixGroup, `memberUid`: alice).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::{ChildGuard, Error, find_binary, free_port, wait_until};

/// Suffix of the fixture directory.
pub const BASE_DN: &str = "dc=example,dc=org";
/// DN of the service account.
pub const SERVICE_DN: &str = "cn=svc,dc=example,dc=org";
/// Password of the service account.
pub const SERVICE_PASSWORD: &str = "svc-secret";
/// Base of the users.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
/// Base of the groups.
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";

const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-secret";

/// A fixture user: uid, password, RDN value as written in a DN (RFC 4514), cn, mail,
/// employeeType.
struct User {
    uid: &'static str,
    password: &'static str,
    rdn: &'static str,
    cn: &'static str,
    mail: &'static str,
    employee_type: &'static str,
}

const USERS: &[User] = &[
    User {
        uid: "alice",
        password: "alice-pw",
        rdn: "alice",
        cn: "Alice Liddell",
        mail: "alice@example.org",
        employee_type: "",
    },
    User {
        uid: "bob",
        password: "bob-pw",
        rdn: "bob",
        cn: "Bob Builder",
        mail: "bob@example.org",
        employee_type: "",
    },
    User {
        uid: "dave",
        password: "dave-pw",
        rdn: "dave",
        cn: "Dave Gone",
        mail: "dave@example.org",
        employee_type: "disabled",
    },
    User {
        uid: "a*()\\b",
        password: "star-pw",
        rdn: "a*()\\\\b",
        cn: "Star Paren",
        mail: "",
        employee_type: "",
    },
    User {
        uid: "c,+\"<>;=d",
        password: "comma-pw",
        rdn: "c\\,\\+\\\"\\<\\>\\;=d",
        cn: "Comma Plus",
        mail: "",
        employee_type: "",
    },
    User {
        uid: "jürgen",
        password: "jürgen-pw",
        rdn: "jürgen",
        cn: "Jürgen Groß",
        mail: "juergen@example.org",
        employee_type: "",
    },
];

/// A connector spec for the fixture at `host`: users by `uid` (id `uid`, `mail`, `cn`,
/// disabled by `employeeType=disabled`), groups by `member`→DN and `memberUid`→uid, named by
/// `cn`; the service account binds.
pub fn connector_spec(
    host: &str,
    security: portcullis_model::kinds::connector::LdapSecurity,
    ca_pem: &str,
) -> portcullis_model::ConnectorSpec {
    use portcullis_model::kinds::connector::{
        LdapConnector, LdapGroupSearch, LdapUserMatcher, LdapUserSearch,
    };
    let matcher = |user_attr: &str, group_attr: &str| LdapUserMatcher {
        user_attr: user_attr.into(),
        group_attr: group_attr.into(),
    };
    portcullis_model::ConnectorSpec {
        display_name: "Example Corp".into(),
        ldap: Some(LdapConnector {
            host: host.into(),
            security,
            ca_bundle: ca_pem.into(),
            bind_dn: SERVICE_DN.into(),
            bind_password_ref: Some(portcullis_model::SecretKeySelector {
                name: "corp-ldap".into(),
                key: "password".into(),
            }),
            user_search: LdapUserSearch {
                base_dn: PEOPLE_DN.into(),
                username_attr: "uid".into(),
                id_attr: "uid".into(),
                email_attr: "mail".into(),
                name_attr: "cn".into(),
                disabled_filter: "(employeeType=disabled)".into(),
                ..Default::default()
            },
            group_search: Some(LdapGroupSearch {
                base_dn: GROUPS_DN.into(),
                user_matchers: vec![matcher("DN", "member"), matcher("uid", "memberUid")],
                name_attr: "cn".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The DN of fixture user `uid`.
pub fn user_dn(uid: &str) -> Option<String> {
    USERS
        .iter()
        .find(|u| u.uid == uid)
        .map(|u| format!("uid={},{PEOPLE_DN}", u.rdn))
}

/// The password of fixture user `uid`.
pub fn password(uid: &str) -> Option<&'static str> {
    USERS.iter().find(|u| u.uid == uid).map(|u| u.password)
}

/// One LDIF line `attr: value`, base64 (`attr:: …`) unless the value is an LDIF SAFE-STRING
/// (RFC 2849 §3: ASCII without NUL/CR/LF, not starting with space, `:` or `<`).
fn line(attr: &str, value: &str) -> String {
    let safe = value
        .bytes()
        .all(|b| b.is_ascii() && b != 0 && b != b'\n' && b != b'\r')
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        format!("{attr}: {value}\n")
    } else {
        format!(
            "{attr}:: {}\n",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

fn fixture() -> String {
    let mut l = String::new();
    l += &line("dn", BASE_DN);
    l += "objectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n";
    l += &line("dn", SERVICE_DN);
    l += "objectClass: person\nobjectClass: simpleSecurityObject\ncn: svc\nsn: svc\n";
    l += &line("userPassword", SERVICE_PASSWORD);
    l += "\n";
    for ou in [PEOPLE_DN, GROUPS_DN] {
        l += &line("dn", ou);
        let name = ou
            .strip_prefix("ou=")
            .and_then(|s| s.split(',').next())
            .unwrap_or("x");
        l += &format!("objectClass: organizationalUnit\nou: {name}\n\n");
    }
    for u in USERS {
        l += &line("dn", &format!("uid={},{PEOPLE_DN}", u.rdn));
        l += "objectClass: inetOrgPerson\n";
        l += &line("uid", u.uid);
        l += &line("cn", u.cn);
        l += &line("sn", u.cn);
        l += &line("userPassword", u.password);
        if !u.mail.is_empty() {
            l += &line("mail", u.mail);
        }
        if !u.employee_type.is_empty() {
            l += &line("employeeType", u.employee_type);
        }
        l += "\n";
    }
    let dn = |uid: &str| user_dn(uid).unwrap_or_default();
    let group_of_names = |cn: &str, members: &[String]| {
        let mut g = line("dn", &format!("cn={cn},{GROUPS_DN}"));
        g += &format!("objectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            g += &line("member", m);
        }
        g + "\n"
    };
    l += &group_of_names("ops", &[dn("bob")]);
    l += &group_of_names("admins", &[dn("alice"), format!("cn=ops,{GROUPS_DN}")]);
    l += &group_of_names("specials", &[dn("a*()\\b"), dn("c,+\"<>;=d")]);
    l += &line("dn", &format!("cn=devs,{GROUPS_DN}"));
    l += "objectClass: posixGroup\ncn: devs\ngidNumber: 1000\n";
    l += &line("memberUid", "alice");
    l += "\n";
    // memberUid is an IA5 (ASCII) string in nis.schema: the non-ASCII user is a member by DN.
    l += &group_of_names("intl", &[dn("jürgen")]);
    l
}

fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {d}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 104857600
suffix \"{BASE_DN}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {d}/db
index objectClass eq
index uid eq
index member eq
index memberUid eq
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by * read
"
    )
}

/// A running slapd with the fixture directory, stopped on drop.
#[derive(Debug)]
pub struct Slapd {
    /// `127.0.0.1:PORT` of the plain listener (and StartTLS).
    pub ldap_addr: String,
    /// `127.0.0.1:PORT` of the LDAPS listener.
    pub ldaps_addr: String,
    ca_pem: String,
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Generates the configuration, the test CA and the fixture, loads the fixture with
    /// `slapadd`, starts slapd and waits until both listeners accept connections.
    pub fn start() -> Result<Slapd, Error> {
        let slapd_bin = find_binary_in("slapd", "slapd")?;
        let slapadd = find_binary_in("slapadd", "slapd")?;
        let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
        let write = |name: &str, body: &str| {
            std::fs::write(dir.path().join(name), body)
                .map_err(|e| Error(format!("writing {name}: {e}")))
        };
        let issued = crate::kube_apiserver::tls::issue()?;
        write("ca.pem", &issued.ca_pem)?;
        write("server.pem", &issued.cert_pem)?;
        write("server.key", &issued.key_pem)?;
        write("slapd.conf", &config(dir.path()))?;
        write("fixture.ldif", &fixture())?;
        std::fs::create_dir(dir.path().join("db")).map_err(|e| Error(e.to_string()))?;
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("fixture.ldif"))
            .output()
            .map_err(|e| Error(format!("running slapadd: {e}")))?;
        if !out.status.success() {
            return Err(Error(format!(
                "slapadd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut slapd = Slapd {
            ldap_addr: String::new(),
            ldaps_addr: String::new(),
            ca_pem: issued.ca_pem,
            child: None,
            dir,
        };
        for _attempt in 0..5 {
            let (plain, tls) = (free_port()?, free_port()?);
            if slapd.spawn(&slapd_bin, plain, tls)? {
                return Ok(slapd);
            }
        }
        drop(slapd);
        Err(Error(
            "slapd did not start on loopback after 5 attempts".into(),
        ))
    }

    fn spawn(&mut self, bin: &std::path::Path, plain: u16, tls: u16) -> Result<bool, Error> {
        let child = Command::new(bin)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{tls}/"
            ))
            // In the foreground, logging nothing.
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error(format!("starting slapd: {e}")))?;
        let mut guard = ChildGuard(child);
        let addrs: [SocketAddr; 2] = [([127, 0, 0, 1], plain).into(), ([127, 0, 0, 1], tls).into()];
        let up = wait_until(Duration::from_secs(20), || {
            matches!(guard.0.try_wait(), Ok(None))
                && addrs
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
        });
        if up && matches!(guard.0.try_wait(), Ok(None)) {
            self.ldap_addr = format!("127.0.0.1:{plain}");
            self.ldaps_addr = format!("127.0.0.1:{tls}");
            self.child = Some(guard);
            return Ok(true);
        }
        Ok(false)
    }

    /// PEM of the CA that issued the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Applies an LDIF change (`changetype: modify` / `delete` / `add`) as the directory's
    /// root, with `ldapmodify`.
    pub fn modify(&self, ldif: &str) -> Result<(), Error> {
        use std::io::Write as _;
        let bin = find_binary_in("ldapmodify", "ldap-utils")?;
        let mut child = Command::new(bin)
            .args(["-x", "-H", &format!("ldap://{}", self.ldap_addr)])
            .args(["-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error(format!("running ldapmodify: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ldif.as_bytes())
                .map_err(|e| Error(format!("writing to ldapmodify: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error(format!("ldapmodify: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error(format!(
                "ldapmodify failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Adds a user `uid` with `password` under `ou=people`.
    pub fn add_user(&self, uid: &str, password: &str) -> Result<(), Error> {
        let mut l = line("dn", &format!("uid={uid},{PEOPLE_DN}"));
        l += "changetype: add\nobjectClass: inetOrgPerson\n";
        l += &line("uid", uid);
        l += &line("cn", uid);
        l += &line("sn", uid);
        l += &line("userPassword", password);
        self.modify(&l)
    }

    /// Stops slapd (the address then refuses connections); the directory is kept.
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Stops slapd and starts it again on the same ports with the same directory: clients'
    /// open connections are cut.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        let port = |addr: &str| {
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| Error(format!("bad address {addr}")))
        };
        let (plain, tls) = (port(&self.ldap_addr)?, port(&self.ldaps_addr)?);
        let bin = find_binary_in("slapd", "slapd")?;
        if self.spawn(&bin, plain, tls)? {
            Ok(())
        } else {
            Err(Error("slapd did not start again on its ports".into()))
        }
    }
}

/// Like [`find_binary`], also looking in the sbin directories (Debian installs slapd and
/// slapadd in `/usr/sbin`, which a non-root PATH may lack).
fn find_binary_in(name: &str, package: &str) -> Result<std::path::PathBuf, Error> {
    find_binary(name, package).or_else(|e| {
        ["/usr/sbin", "/usr/bin", "/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
            .ok_or(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldif_values_outside_safe_strings_are_base64() {
        assert_eq!(line("uid", "alice"), "uid: alice\n");
        assert_eq!(line("uid", "jürgen"), "uid:: asO8cmdlbg==\n");
        assert_eq!(line("cn", " lead"), "cn:: IGxlYWQ=\n");
    }

    #[test]
    fn the_fixture_loads_and_serves() {
        let Ok(slapd) = Slapd::start() else {
            // Without slapd installed the launcher reports it; CI installs it.
            assert!(find_binary_in("slapd", "slapd").is_err());
            return;
        };
        slapd.add_user("zoe", "zoe-pw").unwrap();
    }
}
