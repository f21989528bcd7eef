//! `portcullis`: run the management plane, manage its resources, answer access questions.

mod authz;
mod client;
mod cluster;
mod connector;
mod fleet;
mod resources;

/// mimalloc for the whole process (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use portcullis_server::Config;
use portcullis_server::config::StoreConfig;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity and access for fleets of Kubernetes clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags shared by `up` and `serve`; each overrides the config file.
#[derive(clap::Args, Debug)]
struct ServerFlags {
    /// Data directory (store, PKI, admin.conf).
    #[arg(long, env = "PORTCULLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Public URL of the management plane and OIDC issuer.
    #[arg(long, env = "PORTCULLIS_ISSUER")]
    issuer: Option<String>,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "host", env = "PORTCULLIS_HOSTS", value_delimiter = ',')]
    hosts: Vec<String>,
    /// Store backend.
    #[arg(long, env = "PORTCULLIS_STORE", value_enum)]
    store: Option<StoreKind>,
    /// etcd client URLs, with `--store etcd`.
    #[arg(long, env = "PORTCULLIS_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Where the federation plan goes: applied to each attached cluster (`kubernetes`), or
    /// written as files for Flux or Argo CD (`gitops`, with --gitops-dir).
    #[arg(long, env = "PORTCULLIS_SINK", value_enum)]
    sink: Option<SinkKind>,
    /// With `--sink gitops`: the directory that gets `<cluster>/` per attached cluster.
    #[arg(long, env = "PORTCULLIS_GITOPS_DIR")]
    gitops_dir: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SinkKind {
    Kubernetes,
    Gitops,
}

/// `portcullis agent`'s flags; each overrides the config file.
#[derive(clap::Args, Debug)]
struct AgentFlags {
    /// YAML config file (AgentConfig).
    #[arg(long = "config", env = "PORTCULLIS_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// This cluster's name in the fleet (also the default token audience).
    #[arg(long, env = "PORTCULLIS_CLUSTER")]
    cluster: Option<String>,
    /// The management issuer's URL.
    #[arg(long, env = "PORTCULLIS_ISSUER_URL")]
    issuer_url: Option<String>,
    /// CA bundle (PEM) for the issuer's HTTPS.
    #[arg(long, env = "PORTCULLIS_ISSUER_CA")]
    issuer_ca: Option<PathBuf>,
    /// Token audiences accepted (repeatable; the cluster name when none).
    #[arg(long = "audience", env = "PORTCULLIS_AUDIENCES", value_delimiter = ',')]
    audiences: Vec<String>,
    /// An AuthenticationConfiguration file instead of the issuer flags (reloaded on change).
    #[arg(long, env = "PORTCULLIS_AUTHENTICATION_CONFIG")]
    authentication_config: Option<PathBuf>,
    /// Kubeconfig of the cluster's API server and the agent's credential; in-cluster when
    /// absent.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_KUBECONFIG")]
    upstream_kubeconfig: Option<PathBuf>,
    /// Context of the upstream kubeconfig.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CONTEXT")]
    upstream_context: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Directory for a generated serving certificate.
    #[arg(long, env = "PORTCULLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Extra DNS names or IP addresses for a generated serving certificate (repeatable).
    #[arg(long = "host", env = "PORTCULLIS_HOSTS", value_delimiter = ',')]
    hosts: Vec<String>,
    /// Serving certificate chain (PEM); with --tls-key-file.
    #[arg(long, env = "PORTCULLIS_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, env = "PORTCULLIS_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// CA (PEM) of break-glass client certificates.
    #[arg(long, env = "PORTCULLIS_CLIENT_CA_FILE")]
    client_ca_file: Option<PathBuf>,
    /// Threads serving connections, each with its own upstream connections (0: one per core).
    #[arg(long, env = "PORTCULLIS_WORKERS")]
    workers: Option<usize>,
    /// Log format.
    #[arg(
        long,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreKind {
    Redb,
    Memory,
    Etcd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the CLI finds the API: a kubeconfig, `admin.conf` by default.
#[derive(clap::Args, Debug)]
struct ClientFlags {
    /// Kubeconfig to use.
    #[arg(
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis-data/admin.conf"
    )]
    kubeconfig: PathBuf,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// The rules a user holds in a namespace (SelfSubjectRulesReview), from policy files or
    /// the management plane's own RBAC objects.
    Rules(authz::AuthRulesArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process with an embedded store (first start generates a CA,
    /// certificates and admin.conf in the data directory).
    Up {
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// Run the management plane from a config file.
    Serve {
        /// YAML config file.
        #[arg(long = "config", env = "PORTCULLIS_SERVE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: ServerFlags,
    },
    /// Run on an attached cluster: the API proxy (the issuer's tokens in, impersonation out)
    /// and the TokenReview webhook. Holds no user credentials.
    Agent {
        #[command(flatten)]
        flags: AgentFlags,
    },
    /// Create or update objects from files, directories or `-` (stdin).
    Apply {
        /// Files, directories or `-`.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace for namespaced objects that do not name one.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show objects.
    Get {
        /// Kind, plural, or short name (e.g. `workspaces`, `ws`).
        kind: String,
        /// Object name.
        name: Option<String>,
        /// Namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. `env=prod,tier in (a,b)`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum)]
        output: Option<resources::Output>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete objects by kind and name, or those in files.
    Delete {
        /// Kind, then names.
        #[arg(num_args = 0..)]
        args: Vec<String>,
        /// Files or directories whose objects to delete.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// Namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Succeed when the object does not exist.
        #[arg(long)]
        ignore_not_found: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Can a user do this? Answered by the RBAC engine over policy files (`--policy`), offline.
    CanI(authz::CanIArgs),
    /// Who can do this, through which binding and role? From policy files (`--policy`) or the
    /// management plane's own RBAC objects.
    WhoCan(authz::WhoCanArgs),
    /// May a user do this on a cluster of the fleet, and which portcullis objects (scope,
    /// binding, role) grant it? Exit 0 for yes, 1 for no, as `kubectl auth can-i`.
    Explain(fleet::ExplainArgs),
    /// The per-cluster diff that applying these objects would cause, without applying them.
    Plan(fleet::PlanArgs),
    /// The default roles of the global scope, workspaces and projects.
    Defaults {
        #[command(subcommand)]
        command: DefaultsCommand,
    },
    /// Access questions in kubectl's spelling.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Identity connectors (LDAP/AD).
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Attach, detach and list the clusters the fleet's access policy is delivered to.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Delivery per attached cluster: reachable, synced, objects, drift repairs, conflicts,
    /// last sync and last error (`-o json`: every object, with its source and applied hash).
    Status(cluster::ListArgs),
    /// Administer local accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the version.
    Version,
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum DefaultsCommand {
    /// Recreate the default roles of a scope, overwriting edited ones (other roles are left
    /// alone).
    Reset(fleet::ResetArgs),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Attach a cluster: checks that it answers and that the credentials may manage RBAC
    /// objects and namespaces there, then seals the credentials in the store and creates the
    /// Cluster in the workspace.
    Attach(cluster::AttachArgs),
    /// Detach a cluster (with --cleanup, first remove every object portcullis put there).
    Detach(cluster::DetachArgs),
    /// The attached clusters with their workspace, health and sync state.
    List(cluster::ListArgs),
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Log a user in through a connector as the issuer would: prints the identity and groups
    /// that would be issued and the LDAP operations made (filters, base DNs, result counts).
    /// The password is prompted for, or read with --password-stdin.
    Test(connector::TestArgs),
    /// Set the LDAP service account's bind password: sealed at rest by the server as the
    /// secret the connector's bindPasswordRef names, never printed. Prompted for, or read
    /// with --password-stdin.
    SetBindPassword(connector::SetBindPasswordArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new random password for the static admin (or another local user) and revoke the
    /// account's sessions and refresh tokens. Prints the new password once.
    ResetPassword {
        /// The local user.
        #[arg(default_value = "admin")]
        user: String,
        #[command(flatten)]
        client: ClientFlags,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One process-wide crypto provider: aws-lc-rs (see DESIGN.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up { flags } => serve(Config::default(), flags).await,
        Command::Agent { flags } => agent(flags).await,
        Command::Serve { config, flags } => {
            let base = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            serve(base, flags).await
        }
        Command::Admin {
            command: AdminCommand::ResetPassword { user, client },
        } => {
            let c = client::Client::from_kubeconfig(&client.kubeconfig)?;
            let path = format!(
                "/apis/{}/{}/users/{user}/password",
                portcullis_model::GROUP,
                portcullis_model::VERSION
            );
            let answer = c
                .request(
                    http::Method::POST,
                    &path,
                    Some(("application/json", b"{}".to_vec())),
                )
                .await
                .with_context(|| format!("resetting the password of {user:?}"))?;
            let password = answer
                .get("password")
                .and_then(serde_json::Value::as_str)
                .context("the server's answer has no password")?;
            eprintln!(
                "The password of {user:?} was reset; its sessions and refresh tokens are revoked. New password:"
            );
            println!("{password}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply {
            files,
            namespace,
            client,
        } => {
            let c = client::Client::from_kubeconfig(&client.kubeconfig)?;
            resources::apply(&c, &files, namespace.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            kind,
            name,
            namespace,
            all_namespaces,
            selector,
            output,
            client,
        } => {
            let c = client::Client::from_kubeconfig(&client.kubeconfig)?;
            resources::get(
                &c,
                &kind,
                name.as_deref(),
                namespace.as_deref(),
                all_namespaces,
                selector.as_deref(),
                output,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            args,
            files,
            namespace,
            ignore_not_found,
            client,
        } => {
            let c = client::Client::from_kubeconfig(&client.kubeconfig)?;
            let (kind, names) = match args.split_first() {
                Some((k, rest)) => (Some(k.as_str()), rest.to_vec()),
                None => (None, Vec::new()),
            };
            resources::delete(
                &c,
                kind,
                &names,
                &files,
                namespace.as_deref(),
                ignore_not_found,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connector {
            command: ConnectorCommand::Test(args),
        } => connector::test(&args).await,
        Command::Connector {
            command: ConnectorCommand::SetBindPassword(args),
        } => connector::set_bind_password(&args).await,
        Command::Cluster {
            command: ClusterCommand::Attach(args),
        } => cluster::attach(&args).await,
        Command::Cluster {
            command: ClusterCommand::Detach(args),
        } => cluster::detach(&args).await,
        Command::Cluster {
            command: ClusterCommand::List(args),
        } => cluster::list(&args).await,
        Command::Status(args) => cluster::status(&args).await,
        Command::WhoCan(args) => Ok(ExitCode::from(
            u8::try_from(authz::who_can(&args).await).unwrap_or(2),
        )),
        Command::Auth {
            command: AuthCommand::Rules(args),
        } => Ok(ExitCode::from(
            u8::try_from(authz::auth_rules(&args).await).unwrap_or(2),
        )),
        Command::CanI(args) => {
            let code = if args.source.policy.is_empty() {
                authz::can_i_remote(&args).await
            } else {
                authz::can_i(&args)
            };
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(2)))
        }
        Command::Explain(args) => Ok(fleet::explain(&args).await),
        Command::Plan(args) => fleet::plan(&args).await,
        Command::Defaults {
            command: DefaultsCommand::Reset(args),
        } => fleet::reset(&args).await,
        Command::Version => {
            println!("portcullis {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "portcullis",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a person at a terminal, never into files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(mut config: Config, flags: ServerFlags) -> Result<ExitCode> {
    init_logging(flags.log_format);
    if let Some(d) = flags.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = flags.listen {
        config.listen = l;
    }
    if let Some(i) = flags.issuer {
        config.issuer = i;
    }
    config.hosts.extend(flags.hosts);
    match flags.store {
        Some(StoreKind::Redb) => config.store = StoreConfig::Redb,
        Some(StoreKind::Memory) => config.store = StoreConfig::Memory,
        Some(StoreKind::Etcd) => {
            if flags.etcd_endpoints.is_empty() {
                anyhow::bail!("--store etcd needs --etcd-endpoints URL[,URL…]");
            }
            config.store = StoreConfig::Etcd {
                endpoints: flags.etcd_endpoints,
                prefix: "/portcullis".into(),
            };
        }
        None => {}
    }
    match flags.sink {
        Some(SinkKind::Kubernetes) => {
            config.delivery.sink = portcullis_server::config::Sink::Kubernetes
        }
        Some(SinkKind::Gitops) => config.delivery.sink = portcullis_server::config::Sink::Gitops,
        None => {}
    }
    if let Some(d) = flags.gitops_dir {
        config.delivery.gitops_dir = Some(d);
    }
    let stop = shutdown_signal()?;
    let config_data_dir = config.data_dir.clone();
    let running = portcullis_server::start(config)
        .await
        .context("starting portcullis")?;
    let kubeconfig = running.admin_kubeconfig.display().to_string();
    println!("portcullis is running at {}", running.url);
    println!("  issuer:           {}", running.url);
    println!("  signing keys:     {}", signing_summary(&running.provider));
    println!(
        "  CA certificate:   {}  (trust it: curl --cacert {0} {}/healthz)",
        running.ca_path.display(),
        running.url
    );
    println!(
        "  admin kubeconfig: {kubeconfig}{}",
        if running.admin_kubeconfig_created {
            " (created now; it holds the break-glass admin credential, keep it safe)"
        } else {
            ""
        }
    );
    if let Some(password) = &running.admin_password {
        println!(
            "  static admin:     user \"{}\", password {password}  (shown once; also in {}, mode 0600)",
            portcullis_server::STATIC_ADMIN,
            config_data_dir
                .join(portcullis_server::ADMIN_PASSWORD_FILE)
                .display()
        );
        println!("                    rotate it with: portcullis admin reset-password");
    }
    println!("  try:              kubectl --kubeconfig {kubeconfig} get workspaces");
    println!("                    portcullis --help");
    stop.await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

async fn agent(flags: AgentFlags) -> Result<ExitCode> {
    use portcullis_server::agent::{AgentConfig, ServingCertificate, start_agent};
    init_logging(flags.log_format);
    let mut config = match &flags.config {
        Some(path) => AgentConfig::from_file(path)?,
        None => AgentConfig::default(),
    };
    if let Some(v) = flags.cluster {
        config.cluster = v;
    }
    if let Some(v) = flags.issuer_url {
        config.issuer.url = v;
    }
    if let Some(v) = flags.issuer_ca {
        config.issuer.certificate_authority = Some(v);
    }
    if !flags.audiences.is_empty() {
        config.audiences = flags.audiences;
    }
    if let Some(v) = flags.authentication_config {
        config.authentication_config = Some(v);
    }
    if let Some(v) = flags.upstream_kubeconfig {
        config.upstream.kubeconfig = Some(v);
    }
    if let Some(v) = flags.upstream_context {
        config.upstream.context = Some(v);
    }
    if let Some(v) = flags.listen {
        config.listen = v;
    }
    if let Some(v) = flags.data_dir {
        config.data_dir = v;
    }
    config.hosts.extend(flags.hosts);
    if let (Some(cert_file), Some(key_file)) = (flags.tls_cert_file, flags.tls_key_file) {
        config.serving_certificate = Some(ServingCertificate {
            cert_file,
            key_file,
        });
    }
    if let Some(v) = flags.client_ca_file {
        config.client_ca_file = Some(v);
    }
    if let Some(v) = flags.workers {
        config.workers = v;
    }
    let stop = shutdown_signal()?;
    let cluster = config.cluster.clone();
    let running = start_agent(config).await.context("starting the agent")?;
    println!(
        "portcullis agent for cluster {cluster:?} is running at {}",
        running.url
    );
    if let Some(ca) = &running.ca_path {
        println!(
            "  serving CA:  {}  (generated; give it to kubectl as certificate-authority)",
            ca.display()
        );
    }
    println!(
        "  readiness:   {}/readyz  (true once the issuer's keys are fetched)",
        running.url
    );
    stop.await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// Registers SIGTERM and Ctrl-C handlers now (before the server announces itself, so a
/// supervisor's SIGTERM right after start is handled), and resolves when either arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

/// The published signing algorithms for the startup banner: `ES256, RS256`, and for an
/// algorithm just added to the configuration when its first key starts signing.
fn signing_summary(provider: &portcullis_oidc::Provider) -> String {
    let now = portcullis_jose::unix_now();
    let algs: Vec<String> = provider
        .signing_algorithms()
        .into_iter()
        .map(|alg| match provider.signs_from(alg) {
            Some(from) => format!(
                "{alg} (published; signs in {} min)",
                from.saturating_sub(now).div_ceil(60)
            ),
            None => alg.to_string(),
        })
        .collect();
    format!(
        "{}  (ID tokens: RS256 unless a client sets idTokenSignedResponseAlg)",
        algs.join(", ")
    )
}
