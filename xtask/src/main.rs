//! `cargo xtask`: orchestration only. It never builds the eBPF object
//! itself; agent/build.rs does, through aya-build. Entered through `./x`,
//! which first installs the toolchains (scripts/setup.sh).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

/// The dated nightly for the eBPF crate (TOOLCHAIN.md); keep in sync with
/// agent/build.rs and scripts/setup.sh.
const BPF_TOOLCHAIN: &str = "+nightly-2026-06-20";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// rustfmt check and clippy -D warnings on the user crates and the eBPF crate.
    Lint,
    /// Lint, then every test: unit, BPF_PROG_TEST_RUN tables and netns
    /// tests with real traffic (root required; nothing is skipped).
    /// Build release binaries and run the benchmark (root; see bench/).
    Bench {
        /// Arguments for netagent-bench, e.g. --smoke or --rounds 3.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    Test {
        /// Skip the lint step (for quick local iterations).
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Runs `cmd` and fails with the whole command line if it fails.
fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Cargo for the eBPF crate: rustup's cargo with the pinned nightly (the
/// CARGO of this process belongs to the userspace toolchain).
fn bpf_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(BPF_TOOLCHAIN).current_dir(workspace_root());
    cmd.env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_owned()
}

fn lint() -> anyhow::Result<()> {
    exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "datapath-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(bpf_cargo().args([
        "clippy",
        "--package",
        "datapath-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]))
}

fn test(no_lint: bool, args: &[String]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the tests load eBPF programs and create network namespaces: run as root");
    }
    if !no_lint {
        lint()?;
    }
    // The netns tests run the real binaries; build them with the same profile.
    exec(cargo().args(["build", "--bin", "netagent", "--bin", "netagent-cni"]))?;
    exec(
        cargo()
            .args(["test", "--workspace", "--exclude", "datapath-ebpf", "--"])
            .args(args),
    )
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "--bin",
        "netagent",
        "--bin",
        "netagent-cni",
        "--bin",
        "netagent-bench",
        "--bin",
        "prog-cost",
    ]))?;
    let root = workspace_root();
    // The CNI section's client: libcni, as runtimes use it, built in GOPATH
    // mode from Debian's golang-github-appc-cni-dev (no module proxy).
    exec(
        Command::new("go")
            .args(["build", "-o"])
            .arg(root.join("target/release/na-libcni"))
            .arg(root.join("bench/libcni/main.go"))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", root.join("target/go-cache")),
    )?;
    exec(
        Command::new(root.join("target/release/netagent-bench"))
            .current_dir(&root)
            .env("NETAGENT_BIN", root.join("target/release/netagent"))
            .args(args),
    )?;
    if args.iter().any(|a| a == "--smoke") {
        // The profile's program timing (scripts/profile.sh), once briefly:
        // it checks each kind of packet takes the path it is named for.
        exec(Command::new(root.join("target/release/prog-cost")).arg("1000"))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Lint => lint(),
        Cmd::Test { no_lint, args } => test(no_lint, &args),
        Cmd::Bench { args } => bench(&args),
    }
}
