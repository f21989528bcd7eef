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
    /// Read the connector from this YAML file instead of the management API.
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// File holding the service account's bind password (the value `bindPasswordRef` names).
    #[arg(long, env = "PORTCULLIS_BIND_PASSWORD_FILE")]
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

async fn connector_object(args: &TestArgs) -> Result<Connector> {
    if let Some(file) = &args.file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let name = file.display().to_string();
        for resource in portcullis_model::decode_yaml_documents(&name, &text)? {
            if let Resource::Connector(c) = resource
                && c.metadata.name == args.id
            {
                return Ok(c);
            }
        }
        bail!("{} holds no Connector named {:?}", file.display(), args.id);
    }
    let client = crate::client::Client::from_kubeconfig(&args.kubeconfig)?;
    let path = format!(
        "/apis/{}/{}/connectors/{}",
        portcullis_model::GROUP,
        portcullis_model::VERSION,
        args.id
    );
    let value = client
        .get(&path)
        .await
        .with_context(|| format!("reading connector {:?}", args.id))?;
    let resource = portcullis_model::decode_value(value)?;
    match resource {
        Resource::Connector(c) => Ok(c),
        _ => bail!("the API answered {path} with another kind"),
    }
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

/// Runs the test. Exit code 0: the user would log in; 1: the login is refused; 2: the
/// connector could not answer or is misconfigured.
pub async fn test(args: &TestArgs) -> Result<ExitCode> {
    let object = connector_object(args).await?;
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
    let password = if args.password_stdin {
        first_line(std::io::stdin().lock())?
    } else {
        prompt_password(&format!("Password for {}: ", args.username))?
    };
    let password = SecretString::from(password);
    let connector = LdapConnector::new(
        &args.id,
        &object.spec,
        bind_password,
        LdapOptions::default(),
    )?;

    let mut out = String::new();
    let mut trace = Trace::default();
    let result = connector.login(&args.username, &password, &mut trace).await;
    out += &format!("connector {:?} (ldap)\noperations:\n", args.id);
    for op in &trace.operations {
        out += &format!("  {op}\n");
    }
    let code = match result {
        Ok(Some(user)) => {
            let groups: Vec<String> = user
                .groups
                .iter()
                .map(|g| format!("{}{g}", args.groups_prefix))
                .collect();
            out += &format!(
                "identity:\n  subject: {}\n  user id: {}\n  username: {}\n  name: {}\n  email: {}{}\n  groups: {}\n  RBAC groups: {}\n",
                portcullis_connectors::subject(&args.id, &user.user_id),
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
        Ok(None) => {
            out +=
                "result: no login (unknown user, wrong or empty password, or disabled account)\n";
            ExitCode::from(1)
        }
        Err(e) => {
            out += &format!("error: {e}\n");
            ExitCode::from(2)
        }
    };
    print!("{out}");
    Ok(code)
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
