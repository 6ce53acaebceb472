//! `netagent`: the daemon and its CLI.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use netagent::{
    api::{DEFAULT_SOCKET, Request, Response},
    client,
    datapath::bpf::{PinDir, XdpAttachMode, teardown},
    output,
    server::{self, DEFAULT_BPFFS, DEFAULT_STATE_DIR, DaemonConfig},
};

/// Container port publishing on an eBPF (XDP/TC) datapath.
#[derive(Debug, Parser)]
#[command(name = "netagent", version)]
struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "NETAGENT_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the datapath, reconcile it with the saved state and serve the API.
    Daemon {
        /// Where the desired state is kept.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// bpffs directory for the pinned maps and links (mounted if needed).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// A host interface to serve (XDP + TC); repeat for several.
        #[arg(long = "iface", value_name = "NAME")]
        ifaces: Vec<String>,
        /// How XDP attaches: native (in the driver), generic, or off (TC
        /// ingress translates everything; can be faster on veth).
        #[arg(long, value_enum, default_value_t = XdpAttachMode::Native)]
        xdp_mode: XdpAttachMode,
    },
    /// Publish ports: [HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/tcp|/udp].
    /// Several specs (or a file) are published all together or not at all.
    Publish {
        #[arg(required_unless_present = "file")]
        specs: Vec<String>,
        /// Read specs from a file, one per line ("-" for stdin; blank lines
        /// and lines starting with # are skipped).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Remove a publication (the same spec it was published with).
    Unpublish { spec: String },
    /// List publications as `docker port` does, optionally for one container.
    Port { container_ip: Option<Ipv4Addr> },
    /// Per-publication packet and byte counters, and datapath events.
    Stats,
    /// Detach the datapath and remove every pin (stop the daemon first).
    Teardown {
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let request = match cli.command {
        Command::Daemon {
            state_dir,
            bpffs,
            ifaces,
            xdp_mode,
        } => {
            init_logging();
            return server::run(DaemonConfig {
                state_dir,
                bpffs,
                socket: cli.socket,
                ifaces,
                xdp_mode,
            });
        }
        Command::Teardown { bpffs } => {
            return teardown(&PinDir::new(bpffs)).context("tearing down the datapath");
        }
        Command::Publish { specs, file } => publish_request(specs, file.as_deref())?,
        Command::Unpublish { spec } => Request::Unpublish { spec },
        Command::Port { container_ip } => Request::List { container_ip },
        Command::Stats => Request::Stats,
    };
    let response = client::call(&cli.socket, &request)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    match response {
        Response::Published { publication } => println!("published {}", publication.spec),
        Response::PublishedMany { publications } => {
            for p in publications {
                println!("published {}", p.spec);
            }
        }
        Response::Unpublished { publication } => println!("unpublished {}", publication.spec),
        Response::Publications { publications } => {
            let filtered = matches!(
                request,
                Request::List {
                    container_ip: Some(_)
                }
            );
            print!("{}", output::port_lines(&publications, filtered));
        }
        Response::Stats { stats } => print!("{}", output::stats_table(&stats)),
        Response::Error { message } => anyhow::bail!("{message}"),
    }
    Ok(())
}

/// One spec is a plain publish; several, or a file, an all-or-nothing batch.
fn publish_request(mut specs: Vec<String>, file: Option<&Path>) -> anyhow::Result<Request> {
    if let Some(path) = file {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("reading specs from stdin")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading specs from {}", path.display()))?
        };
        specs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(match <[String; 1]>::try_from(specs) {
        Ok([spec]) => Request::Publish { spec },
        Err(specs) => Request::PublishMany { specs },
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
