//! The command line: clap arguments, mapped onto API requests. Flags live
//! here only, so a flag can be renamed or aliased without changing the API.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net};

use crate::{
    api::{ContainerAttach, ContainerFile, DEFAULT_SOCKET, NetworkConnect, NetworkCreate, Request},
    datapath::XdpAttachMode,
    masq::MasqPorts,
    server::{DEFAULT_BPFFS, DEFAULT_STATE_DIR},
};

/// Container networking on an eBPF (XDP/TC) datapath: port publishing,
/// bridge networks, isolation and masquerade.
#[derive(Debug, Parser)]
#[command(name = "netagent", version)]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "NETAGENT_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the command's result as JSON (an object for one item, a list
    /// for several; docs: README, "JSON output").
    #[arg(long, global = true, conflicts_with = "format")]
    pub json: bool,
    /// Print each item through a template: `{{.field.sub}}` picks a field
    /// of the JSON result, `{{json .field}}` prints it as JSON
    /// (`inspect`, `ls` and `port`).
    #[arg(long, global = true, value_name = "TEMPLATE")]
    pub format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the datapath, reconcile it with the saved state and serve the API.
    Daemon(DaemonArgs),
    /// Publish ports: [HOSTIP:]HOSTPORT->CONTAINERIP:CONTAINERPORT[/tcp|/udp],
    /// IPv6 addresses in brackets. Several specs (or a file) are published
    /// all together or not at all.
    Publish {
        /// Publication specs, e.g. `127.0.0.1:5000->172.17.0.2:5000/udp`,
        /// `[::1]:8080->[fd00::2]:80`.
        #[arg(required_unless_present = "file", value_name = "SPEC")]
        specs: Vec<String>,
        /// Read specs from a file, one per line ("-" for stdin; blank lines
        /// and lines starting with # are skipped).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Remove a publication (the same spec it was published with).
    Unpublish {
        /// The spec the publication was made with.
        #[arg(value_name = "SPEC")]
        spec: String,
    },
    /// List publications as `docker port` does: all of them, those to one
    /// container address, or one container's (optionally only
    /// CPORT[/PROTO]).
    Port {
        /// A container (name, ID or unique ID prefix) or a container address.
        #[arg(value_name = "CONTAINER")]
        container: Option<String>,
        /// `CPORT[/PROTO]` (with a container).
        #[arg(value_name = "PORT[/PROTO]")]
        port: Option<String>,
    },
    /// Networks: create, list, inspect, remove, connect, disconnect.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Containers (network namespaces): attach, detach, list, inspect.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Per-publication packet and byte counters, and datapath events.
    Stats,
    /// Detach the datapath and remove every pin (stop the daemon first).
    Teardown {
        /// The bpffs directory the daemon pinned into.
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// The daemon's state directory: the bridges and container
        /// interfaces it names are deleted too (the state itself is kept,
        /// so the next daemon start rebuilds them).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where the desired state is kept.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// bpffs directory for the pinned maps and links (mounted if needed).
    #[arg(long, default_value = DEFAULT_BPFFS)]
    pub bpffs: PathBuf,
    /// A host interface to serve (XDP + TC); repeat for several.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// How XDP attaches: auto (native XDP only where the driver gains
    /// from it, physical NICs such as mlx5/ice/i40e; TC only on veth,
    /// virtio_net and the rest), or native, generic, off (TC only) on
    /// every interface. `netagent stats` shows each interface's mode and why.
    #[arg(long, value_enum, default_value_t = XdpAttachMode::Auto)]
    pub xdp_mode: XdpAttachMode,
    /// Hold a socket on every published port so no other process can
    /// take it (one open file each). With `false`, ports are still
    /// checked against other processes when published, but not held.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub hold_ports: bool,
    /// Source ports masquerade may use, LO-HI[,LO-HI]. Default:
    /// 1024-65535 minus the host's ephemeral range
    /// (net.ipv4.ip_local_port_range), so masqueraded flows never take
    /// a tuple the host's own connections may pick.
    #[arg(long, value_name = "RANGES")]
    pub masquerade_ports: Option<MasqPorts>,
    /// The cgroup (v2) whose processes reach published ports from the host
    /// itself (127.0.0.1:PORT, a host address, a wildcard publication),
    /// translated at the socket by its hooks; `none` for no host-local
    /// access. Default: the cgroup2 root, every process of the host.
    #[arg(long, value_name = "PATH|none")]
    pub cgroup: Option<String>,
    /// An upstream DNS server for the embedded resolver (repeatable, at
    /// most 3 used); default: the nameservers of --resolv-conf.
    #[arg(long = "dns", value_name = "IP[:PORT]", value_parser = parse_upstream)]
    pub dns: Vec<std::net::SocketAddr>,
    /// Inter-container communication on the default `bridge` network
    /// (Docker's daemon --icc): with false, its containers reach each
    /// other only through legacy links' exposed ports.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub icc: bool,
    /// The host's resolv.conf: upstream servers (unless --dns), search
    /// domains and options for containers' resolv.conf.
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create(NetworkCreateArgs),
    /// List networks (the pre-defined bridge, host and none included).
    #[command(alias = "list")]
    Ls,
    /// A network's configuration and containers, as JSON.
    Inspect {
        /// Network name, ID or unique ID prefix.
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// Remove networks (refused while containers use them).
    #[command(alias = "remove")]
    Rm {
        /// Network names, IDs or unique ID prefixes.
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Connect a container to a network (a new interface in it).
    Connect {
        /// Network name, ID or unique ID prefix.
        network: String,
        /// Container name, ID or unique ID prefix.
        container: String,
        /// The container's address on the network (user-defined networks).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// The container's IPv6 address (user-defined dual-stack networks).
        #[arg(long)]
        ip6: Option<Ipv6Addr>,
        /// A network-scoped alias (repeatable; user-defined networks).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// Disconnect a container from a network. If the network carried its
    /// default route, the route and the published ports move to another
    /// network with outside access.
    Disconnect {
        /// Network name, ID or unique ID prefix.
        network: String,
        /// Container name, ID or unique ID prefix.
        container: String,
    },
}

/// `network create`'s flags (Docker's).
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// The network's name ([a-zA-Z0-9][a-zA-Z0-9_.-], at most 63 characters).
    pub name: String,
    /// Subnet in CIDR form, one IPv4 and (with --ipv6) one IPv6, as
    /// `--subnet 172.30.0.0/16 --subnet fd00:30::/64`. IPv4 is picked from
    /// 172.17-31.0.0/16, then 192.168.0.0/16 in /20s, IPv6 is a unique
    /// local /64, both avoiding networks and host routes.
    #[arg(long)]
    pub subnet: Vec<IpNet>,
    /// Gateway (the bridge's address), one per family; the subnet's first
    /// host address by default.
    #[arg(long)]
    pub gateway: Vec<IpAddr>,
    /// Dual stack: the network gets an IPv6 subnet too, and its
    /// containers an IPv6 address beside their IPv4 one.
    #[arg(long)]
    pub ipv6: bool,
    /// Allocate container addresses from this sub-range only.
    #[arg(long)]
    pub ip_range: Option<Ipv4Net>,
    /// No traffic leaves the network's subnet.
    #[arg(long)]
    pub internal: bool,
    /// Inter-container communication (`--icc=false` blocks it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub icc: bool,
    /// Network driver (only `bridge`).
    #[arg(long, short = 'd')]
    pub driver: Option<String>,
    /// Driver options, as Docker takes them:
    /// `com.docker.network.bridge.gateway_mode_ipv4=nat|routed`.
    #[arg(long = "opt", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Attach a network namespace as a container.
    Attach(Box<ContainerAttachArgs>),
    /// Detach a container: its interfaces, addresses and ports go.
    #[command(alias = "rm")]
    Detach {
        /// Container name, ID or unique ID prefix.
        #[arg(value_name = "CONTAINER")]
        name: String,
    },
    /// List containers.
    #[command(alias = "list")]
    Ls,
    /// A container's networking, as JSON.
    Inspect {
        /// Container name, ID or unique ID prefix.
        #[arg(value_name = "CONTAINER")]
        name: String,
    },
    /// The resolv.conf netagent makes for a container (written to
    /// /etc/netns/NAME/ for a /run/netns/NAME namespace; for other
    /// runtimes to install).
    #[command(name = "resolv-conf")]
    ResolvConf {
        /// Container name, ID or unique ID prefix.
        #[arg(value_name = "CONTAINER")]
        name: String,
    },
    /// The hosts file netagent makes for a container (localhost, its own
    /// addresses, its legacy links).
    Hosts {
        /// Container name, ID or unique ID prefix.
        #[arg(value_name = "CONTAINER")]
        name: String,
    },
    /// The environment variables a container's legacy links give it
    /// (`ALIAS_PORT_...`, `ALIAS_NAME`, `ALIAS_ENV_...`).
    Env {
        /// Container name, ID or unique ID prefix.
        #[arg(value_name = "CONTAINER")]
        name: String,
    },
}

/// `container attach`'s flags (Docker's `run` networking flags).
#[derive(Debug, Args)]
#[command(after_help = "\
Required: --netns, except with --network container:OTHER (the namespace is \
OTHER's) and --network host (the host's own).

Examples:
  netagent container attach web --netns /run/netns/web -p 8080:80
  netagent container attach --netns /proc/4242/ns/net --network backend --alias db
  netagent container attach sidecar --network container:web")]
pub struct ContainerAttachArgs {
    /// Container name, unique ([a-zA-Z0-9][a-zA-Z0-9_.-]+); generated
    /// (adjective_surname) when left out.
    pub name: Option<String>,
    /// The container's network namespace (/run/netns/NAME,
    /// /proc/PID/ns/net).
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// A network (name, ID or prefix; default `bridge`), `host`, `none`,
    /// or `container:OTHER` to share OTHER's network stack.
    #[arg(long, visible_alias = "net")]
    pub network: Option<String>,
    /// The container's address (user-defined networks).
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// The container's IPv6 address (user-defined dual-stack networks).
    #[arg(long)]
    pub ip6: Option<Ipv6Addr>,
    /// A network-scoped alias (repeatable; user-defined networks).
    #[arg(long = "alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    /// Publish: [IP:][HOSTPORT[-END]:]CPORT[-END][/tcp|/udp] (an IPv6 IP in
    /// brackets: `[::1]:8080:80`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every exposed port to a random host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose PORT[-END][/PROTO] (published by -P).
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// The container interface's MAC address (aa:bb:cc:dd:ee:ff, unicast).
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Link to container NAME, known here as ALIAS (repeatable). On the
    /// default bridge: environment variables (`container env`), a hosts
    /// entry, and with --icc=false its exposed ports; on a user-defined
    /// network: ALIAS resolves to it for this container.
    #[arg(long = "link", value_name = "NAME[:ALIAS]")]
    pub links: Vec<String>,
    /// An environment variable containers linking to this one see as
    /// ALIAS_ENV_VAR (repeatable).
    #[arg(short = 'e', long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// An upstream DNS server for this container (repeatable; replaces
    /// the daemon's).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<IpAddr>,
    /// A DNS search domain for its resolv.conf (repeatable; `.` for none).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// The hostname its runtime gives it (netagent sets none): a name it
    /// resolves by, and its hosts file's own line. Default: the short ID.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// A resolv.conf option, e.g. ndots:2 (repeatable).
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub dns_options: Vec<String>,
}

/// An upstream server: an address, with a port or not (53); an IPv6 one
/// with a port in brackets.
fn parse_upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(at) = s.parse::<std::net::SocketAddr>() {
        return Ok(at);
    }
    s.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not an address (IP or IP:PORT, [IPv6]:PORT)"))
}

impl TryFrom<NetworkCreateArgs> for NetworkCreate {
    type Error = anyhow::Error;

    /// Sorts the subnets and gateways by family: at most one of each.
    fn try_from(a: NetworkCreateArgs) -> anyhow::Result<Self> {
        let (mut subnet, mut subnet6, mut gateway, mut gateway6) = (None, None, None, None);
        for net in a.subnet {
            let dup = match net {
                IpNet::V4(n) => subnet.replace(n).is_some(),
                IpNet::V6(n) => subnet6.replace(n).is_some(),
            };
            anyhow::ensure!(!dup, "--subnet {net}: one subnet per address family");
        }
        for ip in a.gateway {
            let dup = match ip {
                IpAddr::V4(ip) => gateway.replace(ip).is_some(),
                IpAddr::V6(ip) => gateway6.replace(ip).is_some(),
            };
            anyhow::ensure!(!dup, "--gateway {ip}: one gateway per address family");
        }
        anyhow::ensure!(
            gateway6.is_none() || subnet6.is_some(),
            "--gateway {}: an IPv6 gateway needs an IPv6 --subnet",
            gateway6.map(|g| g.to_string()).unwrap_or_default()
        );
        anyhow::ensure!(
            gateway.is_none() || subnet.is_some(),
            "--gateway {}: a gateway needs a --subnet of its family",
            gateway.map(|g| g.to_string()).unwrap_or_default()
        );
        Ok(NetworkCreate {
            name: a.name,
            subnet,
            gateway,
            ip_range: a.ip_range,
            ipv6: a.ipv6,
            subnet6,
            gateway6,
            internal: a.internal,
            icc: a.icc,
            driver: a.driver,
            options: a.options,
        })
    }
}

impl From<ContainerAttachArgs> for ContainerAttach {
    fn from(a: ContainerAttachArgs) -> Self {
        ContainerAttach {
            name: a.name,
            netns: a.netns,
            network: a.network,
            ip: a.ip,
            ip6: a.ip6,
            aliases: a.aliases,
            publish: a.publish,
            publish_all: a.publish_all,
            expose: a.expose,
            ifname: None,
            mac: a.mac_address,
            cni: None,
            env: a.env,
            links: a.links,
            dns: a.dns,
            dns_search: a.dns_search,
            dns_options: a.dns_options,
            hostname: a.hostname,
        }
    }
}

/// The API request a client command makes (`daemon` and `teardown` make
/// none: they run here).
pub fn request(command: Command) -> anyhow::Result<Request> {
    Ok(match command {
        Command::Daemon(_) | Command::Teardown { .. } => {
            anyhow::bail!("daemon and teardown run locally, not through the API")
        }
        Command::Publish { specs, file } => publish_request(specs, file.as_deref())?,
        Command::Unpublish { spec } => Request::Unpublish { spec },
        Command::Port { container, port } => port_request(container, port)?,
        Command::Stats => Request::Stats,
        Command::Network(cmd) => network_request(cmd)?,
        Command::Container(cmd) => match cmd {
            ContainerCommand::Attach(args) => Request::ContainerAttach((*args).into()),
            ContainerCommand::Detach { name } => Request::ContainerDetach { name },
            ContainerCommand::Ls => Request::ContainerLs,
            ContainerCommand::Inspect { name } => Request::ContainerInspect { name },
            ContainerCommand::ResolvConf { name } => Request::ContainerFile {
                name,
                file: ContainerFile::ResolvConf,
            },
            ContainerCommand::Hosts { name } => Request::ContainerFile {
                name,
                file: ContainerFile::Hosts,
            },
            ContainerCommand::Env { name } => Request::ContainerFile {
                name,
                file: ContainerFile::Env,
            },
        },
    })
}

/// `port` takes a container address (publications to it), a container
/// (its publications), or nothing (every publication).
fn port_request(container: Option<String>, port: Option<String>) -> anyhow::Result<Request> {
    Ok(match container {
        None => Request::List { container_ip: None },
        Some(c) => match c.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
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
        NetworkCommand::Create(args) => Request::NetworkCreate(args.try_into()?),
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
            ip6,
            aliases,
        } => Request::NetworkConnect(NetworkConnect {
            network,
            container,
            ip,
            ip6,
            aliases,
            ..NetworkConnect::default()
        }),
        NetworkCommand::Disconnect { network, container } => {
            Request::NetworkDisconnect { network, container }
        }
    })
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Request {
        let cli = Cli::try_parse_from(std::iter::once("netagent").chain(args.iter().copied()))
            .expect("parses");
        request(cli.command).expect("a request")
    }

    #[test]
    fn net_is_an_alias_of_network_and_the_name_is_optional() {
        let Request::ContainerAttach(a) =
            parse(&["container", "attach", "--net", "host", "-p", "80:80"])
        else {
            panic!("not an attach");
        };
        assert_eq!((a.name, a.network.as_deref()), (None, Some("host")));
        assert_eq!(a.publish, ["80:80"]);
        let Request::ContainerAttach(a) = parse(&["container", "attach", "web", "--network", "n"])
        else {
            panic!("not an attach");
        };
        assert_eq!(a.name.as_deref(), Some("web"));
    }

    #[test]
    fn every_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "netagent", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn attach_help_says_what_is_required() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("container")
            .and_then(|c| c.find_subcommand_mut("attach"))
            .expect("container attach")
            .render_long_help()
            .to_string();
        assert!(help.contains("Required: --netns"), "{help}");
        assert!(help.contains("--net"), "{help}");
    }
}
