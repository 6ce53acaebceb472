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
    containers::{ContainerAttach, NetworkCreate},
    datapath::bpf::{PinDir, XdpAttachMode},
    output,
    server::{self, DEFAULT_BPFFS, DEFAULT_STATE_DIR, DaemonConfig},
};

/// Container networking on an eBPF (XDP/TC) datapath: port publishing,
/// bridge networks, isolation and masquerade.
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
        /// Hold a socket on every published port so no other process can
        /// take it (one open file each). With `false`, ports are still
        /// checked against other processes when published, but not held.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        hold_ports: bool,
        /// Source ports masquerade may use, LO-HI[,LO-HI]. Default:
        /// 1024-65535 minus the host's ephemeral range
        /// (net.ipv4.ip_local_port_range), so masqueraded flows never take
        /// a tuple the host's own connections may pick.
        #[arg(long, value_name = "RANGES")]
        masquerade_ports: Option<netagent::masq::MasqPorts>,
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
    /// List publications as `docker port` does: all of them, those to one
    /// container address, or one container's (by name, optionally only
    /// CPORT[/PROTO]).
    Port {
        /// A container name or address.
        container: Option<String>,
        /// `CPORT[/PROTO]` (with a container name).
        port: Option<String>,
    },
    /// Bridge networks: create, list, inspect, remove, connect, disconnect.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Containers (network namespaces): attach, detach, list, inspect.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Per-publication packet and byte counters, and datapath events.
    Stats,
    /// Detach the datapath and remove every pin (stop the daemon first).
    Teardown {
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// The daemon's state directory: the bridges and container
        /// interfaces it names are deleted too (the state itself is kept,
        /// so the next daemon start rebuilds them).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a bridge network.
    Create(NetworkCreate),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// A network's configuration and endpoints, as JSON.
    Inspect { name: String },
    /// Remove networks (refused while containers use them).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network (a new interface in it).
    Connect {
        network: String,
        container: String,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// Attach a network namespace as a container.
    Attach(ContainerAttach),
    /// Detach a container: its interfaces, addresses and ports go.
    #[command(alias = "rm")]
    Detach { name: String },
    /// List containers.
    #[command(alias = "list")]
    Ls,
    /// A container's networking, as JSON.
    Inspect { name: String },
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
            hold_ports,
            masquerade_ports,
        } => {
            init_logging();
            return server::run(DaemonConfig {
                state_dir,
                bpffs,
                socket: cli.socket,
                ifaces,
                xdp_mode,
                hold_ports,
                masquerade_ports,
            });
        }
        Command::Teardown { bpffs, state_dir } => {
            return server::teardown_all(&PinDir::new(bpffs), &state_dir)
                .context("tearing down the datapath");
        }
        Command::Publish { specs, file } => publish_request(specs, file.as_deref())?,
        Command::Unpublish { spec } => Request::Unpublish { spec },
        Command::Port { container, port } => port_request(container, port)?,
        Command::Stats => Request::Stats,
        Command::Network(cmd) => network_request(cmd)?,
        Command::Container(cmd) => container_request(cmd),
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
        Response::Network { network } => match request {
            Request::NetworkRm { .. } => println!("{}", network.name),
            _ => println!("{}", network.id),
        },
        Response::Networks { networks } => print!("{}", output::network_table(&networks)),
        Response::NetworkInfo { info } => println!("{}", serde_json::to_string_pretty(&info)?),
        Response::Endpoint { .. } => {}
        Response::Container { info } => match request {
            Request::ContainerInspect { .. } => {
                println!("{}", serde_json::to_string_pretty(&info)?);
            }
            _ => println!("{}", info.container.id),
        },
        Response::Containers { containers } => {
            print!("{}", output::container_table(&containers));
        }
        Response::Detached { container } => println!("{}", container.name),
        Response::Ports { ports } => {
            let filtered = matches!(
                request,
                Request::ContainerPorts {
                    filter: Some(_),
                    ..
                }
            );
            print!("{}", output::container_port_lines(&ports, filtered));
        }
        Response::Error { message } => anyhow::bail!("{message}"),
    }
    Ok(())
}

/// `port` takes a container address (publications to it), a container
/// name (its publications), or nothing (every publication).
fn port_request(container: Option<String>, port: Option<String>) -> anyhow::Result<Request> {
    Ok(match container {
        None => Request::List { container_ip: None },
        Some(c) => match c.parse::<Ipv4Addr>() {
            Ok(ip) => {
                if port.is_some() {
                    anyhow::bail!("a port filter needs a container name, not an address");
                }
                Request::List {
                    container_ip: Some(ip),
                }
            }
            Err(_) => Request::ContainerPorts {
                name: c,
                filter: port,
            },
        },
    })
}

fn network_request(cmd: NetworkCommand) -> anyhow::Result<Request> {
    Ok(match cmd {
        NetworkCommand::Create(req) => Request::NetworkCreate(req),
        NetworkCommand::Ls => Request::NetworkLs,
        NetworkCommand::Inspect { name } => Request::NetworkInspect { name },
        NetworkCommand::Rm { names } => match <[String; 1]>::try_from(names) {
            Ok([name]) => Request::NetworkRm { name },
            Err(_) => anyhow::bail!("remove one network at a time"),
        },
        NetworkCommand::Connect {
            network,
            container,
            ip,
            aliases,
        } => Request::NetworkConnect {
            network,
            container,
            ip,
            aliases,
        },
        NetworkCommand::Disconnect { network, container } => {
            Request::NetworkDisconnect { network, container }
        }
    })
}

fn container_request(cmd: ContainerCommand) -> Request {
    match cmd {
        ContainerCommand::Attach(req) => Request::ContainerAttach(req),
        ContainerCommand::Detach { name } => Request::ContainerDetach { name },
        ContainerCommand::Ls => Request::ContainerLs,
        ContainerCommand::Inspect { name } => Request::ContainerInspect { name },
    }
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
