//! `portcullis connector test`: logs a user in through a connector as the issuer would, and
//! prints the identity and groups that would be issued and every LDAP operation made.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::{PasswordConnector as _, Trace};
use portcullis_model::{Connector, ConnectorType, Resource};
use secrecy::SecretString;

/// Arguments of `portcullis connector test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The connector's id (its `metadata.name`).
    id: String,
    /// The user name to log in with.
    #[arg(long)]
    username: String,
    /// Read the user's password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Test here, with the connector of this YAML file, instead of asking the management
    /// plane to test the connector it serves (with its sealed bind password).
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// With -f: file holding the service account's bind password.
    #[arg(long, env = "PORTCULLIS_BIND_PASSWORD_FILE", requires = "file")]
    bind_password_file: Option<PathBuf>,
    /// Prefix RBAC puts before the groups.
    #[arg(long, default_value = "oidc:")]
    groups_prefix: String,
    /// Kubeconfig to use for the management API.
    #[arg(
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis-data/admin.conf"
    )]
    kubeconfig: PathBuf,
}

fn connector_from_file(file: &std::path::Path, id: &str) -> Result<Connector> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    for resource in portcullis_model::decode_yaml_documents(&name, &text)? {
        if let Resource::Connector(c) = resource
            && c.metadata.name == id
        {
            return Ok(c);
        }
    }
    bail!("{} holds no Connector named {id:?}", file.display());
}

/// The first line of `reader`, without its line end.
fn first_line(mut reader: impl std::io::BufRead) -> Result<String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("reading the password")?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Prompts on the terminal without echo.
fn prompt_password(prompt: &str) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("standard input is not a terminal: pass the password with --password-stdin");
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).context("reading the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning terminal echo off")?;
    let line = first_line(stdin.lock());
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    line
}

/// What a test login found.
struct Report {
    operations: Vec<String>,
    identity: Option<portcullis_connectors::Identity>,
    error: Option<String>,
}

/// Prints the report; exit code 0: the user would log in; 1: the login is refused; 2: the
/// connector could not answer or is misconfigured.
fn print_report(id: &str, groups_prefix: &str, report: &Report) -> ExitCode {
    let mut out = format!("connector {id:?}\noperations:\n");
    for op in &report.operations {
        out += &format!("  {op}\n");
    }
    let code = match (&report.identity, &report.error) {
        (_, Some(e)) => {
            out += &format!("error: {e}\n");
            ExitCode::from(2)
        }
        (Some(user), None) => {
            let groups: Vec<String> = user
                .groups
                .iter()
                .map(|g| format!("{groups_prefix}{g}"))
                .collect();
            out += &format!(
                "identity:\n  subject: {}\n  user id: {}\n  username: {}\n  name: {}\n  email: {}{}\n  groups: {}\n  RBAC groups: {}\n",
                portcullis_connectors::subject(id, &user.user_id),
                user.user_id,
                user.username,
                user.name,
                user.email,
                if user.email_verified {
                    " (verified)"
                } else {
                    ""
                },
                user.groups.join(", "),
                groups.join(", "),
            );
            ExitCode::SUCCESS
        }
        (None, None) => {
            out +=
                "result: no login (unknown user, wrong or empty password, or disabled account)\n";
            ExitCode::from(1)
        }
    };
    print!("{out}");
    code
}

/// The test run here, from a Connector file and a bind password file.
async fn test_locally(
    args: &TestArgs,
    file: &std::path::Path,
    password: &SecretString,
) -> Result<Report> {
    let object = connector_from_file(file, &args.id)?;
    if let Err(errors) = portcullis_model::validate(&Resource::Connector(object.clone())) {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!(
            "connector {:?} is not valid:\n  {}",
            args.id,
            lines.join("\n  ")
        );
    }
    if object.spec.type_ != ConnectorType::Ldap {
        bail!(
            "connector {:?} has type {:?}; `connector test` checks password connectors (ldap)",
            args.id,
            object.spec.type_
        );
    }
    let bind_password = match &args.bind_password_file {
        Some(path) => Some(SecretString::from(first_line(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))?)),
        None => None,
    };
    let connector = LdapConnector::new(
        &args.id,
        &object.spec,
        bind_password,
        LdapOptions::default(),
    )?;
    let mut trace = Trace::default();
    let result = connector.login(&args.username, password, &mut trace).await;
    let (identity, error) = match result {
        Ok(identity) => (identity, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Report {
        operations: trace.operations.iter().map(ToString::to_string).collect(),
        identity,
        error,
    })
}

/// The test run by the management plane, with the connector as it serves it.
async fn test_remotely(args: &TestArgs, password: &SecretString) -> Result<Report> {
    use secrecy::ExposeSecret as _;
    let client = crate::client::Client::from_kubeconfig(&args.kubeconfig)?;
    let path = format!(
        "/apis/{}/{}/connectors/{}/test",
        portcullis_model::GROUP,
        portcullis_model::VERSION,
        args.id
    );
    let body = serde_json::to_vec(&serde_json::json!({
        "username": args.username,
        "password": password.expose_secret(),
    }))
    .context("encoding the request")?;
    let answer = client
        .request(http::Method::POST, &path, Some(("application/json", body)))
        .await
        .with_context(|| format!("testing connector {:?}", args.id))?;
    let operations = answer
        .get("operations")
        .and_then(serde_json::Value::as_array)
        .map(|ops| {
            ops.iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let identity = match answer.get("identity") {
        Some(v) if !v.is_null() => {
            let text = |f: &str| {
                v.get(f)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Some(portcullis_connectors::Identity {
                user_id: text("userID"),
                username: text("username"),
                name: text("name"),
                email: text("email"),
                email_verified: v
                    .get("emailVerified")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                groups: v
                    .get("groups")
                    .and_then(|g| serde_json::from_value(g.clone()).ok())
                    .unwrap_or_default(),
            })
        }
        _ => None,
    };
    let error = answer
        .get("error")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(Report {
        operations,
        identity,
        error,
    })
}

/// Runs the test: with `-f`, here from the file; otherwise by the management plane, with the
/// connector and sealed bind password it serves.
pub async fn test(args: &TestArgs) -> Result<ExitCode> {
    let password = if args.password_stdin {
        first_line(std::io::stdin().lock())?
    } else {
        prompt_password(&format!("Password for {}: ", args.username))?
    };
    let password = SecretString::from(password);
    let report = match &args.file {
        Some(file) => test_locally(args, file, &password).await?,
        None => test_remotely(args, &password).await?,
    };
    Ok(print_report(&args.id, &args.groups_prefix, &report))
}

/// Arguments of `portcullis connector set-bind-password`.
#[derive(clap::Args, Debug)]
pub struct SetBindPasswordArgs {
    /// The connector's id.
    id: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Kubeconfig to use for the management API.
    #[arg(
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis-data/admin.conf"
    )]
    kubeconfig: PathBuf,
}

/// Sends the bind password to the server, which seals it.
pub async fn set_bind_password(args: &SetBindPasswordArgs) -> Result<ExitCode> {
    let password = if args.password_stdin {
        first_line(std::io::stdin().lock())?
    } else {
        prompt_password(&format!("Bind password for connector {}: ", args.id))?
    };
    let client = crate::client::Client::from_kubeconfig(&args.kubeconfig)?;
    let path = format!(
        "/apis/{}/{}/connectors/{}/bindpassword",
        portcullis_model::GROUP,
        portcullis_model::VERSION,
        args.id
    );
    let body = serde_json::to_vec(&serde_json::json!({ "password": password }))
        .context("encoding the request")?;
    client
        .request(http::Method::POST, &path, Some(("application/json", body)))
        .await
        .with_context(|| format!("setting the bind password of connector {:?}", args.id))?;
    eprintln!(
        "The bind password of connector {:?} is set (sealed at rest); the connector reconnects with it.",
        args.id
    );
    Ok(ExitCode::SUCCESS)
}

/// After `apply` of a Connector: waits (at most ten seconds) for the server's connect-and-bind
/// check of this generation and prints its outcome. Validation already passed; a failed check
/// does not fail the apply (the object is stored), it says what to fix.
pub async fn report_check(client: &crate::client::Client, kind: &str, path: &str, label: &str) {
    if kind != "Connector" {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(object) = client.get(path).await {
            let generation = object.pointer("/metadata/generation").cloned();
            let ready = object
                .pointer("/status/conditions")
                .and_then(serde_json::Value::as_array)
                .and_then(|c| {
                    c.iter().find(|c| {
                        c.get("type").and_then(serde_json::Value::as_str) == Some("Ready")
                            && c.get("observedGeneration").cloned() == generation
                    })
                })
                .cloned();
            if let Some(ready) = ready {
                let text = |f: &str| {
                    ready
                        .get(f)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                if text("status") == "True" {
                    eprintln!("{label}: connection check passed ({})", text("message"));
                } else {
                    eprintln!("{label}: connection check failed: {}", text("message"));
                }
                return;
            }
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "{label}: the connection check has not finished; see `portcullis get {label} -o yaml`"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
