//! `netagent daemon`: loads the datapath, reconciles it with the state file,
//! keeps the local-address map in step with netlink, and serves the API.
//!
//! Stopping the daemon (SIGTERM/SIGINT, or a crash) leaves the pinned maps
//! and links in place, so established and new flows keep being forwarded;
//! `netagent teardown` removes the datapath for good.

use std::{
    fs, io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
};
use tracing::{debug, error, info, warn};

use crate::{
    agent::Agent,
    api::{ErrorKind, Request, Response},
    datapath::{
        Datapath, HostMaps as _, SocketHooks as _, XdpAttachMode,
        bpf::{BpfDatapath, PinDir},
    },
    error::AgentError,
    host::{Host, netlink::NetlinkHost, ports::raise_fd_limit},
    localaddr,
    masq::MasqPorts,
    portmap::ExposedPorts,
    spec::PortSpec,
    state::StateStore,
};

/// Default state directory (desired state, lock).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netagent";
/// Default bpffs directory for pins.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/netagent";
/// Longest request line accepted, so a runaway client cannot exhaust memory.
/// Room for a bulk publish of every slot (65,536 specs of ~40 bytes).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub ifaces: Vec<String>,
    pub xdp_mode: XdpAttachMode,
    /// Hold a socket on every published port (see `host::ports`).
    pub hold_ports: bool,
    /// Masquerade source ports; `None`: 1024-65535 minus the host's
    /// ephemeral range.
    pub masquerade_ports: Option<MasqPorts>,
    /// Where the socket hooks go (host-local access to published ports).
    pub cgroup: CgroupChoice,
    /// The embedded resolver's upstreams (`--dns`); empty: the host's.
    pub dns: Vec<std::net::SocketAddr>,
    /// The host's resolv.conf (`--resolv-conf`).
    pub resolv_conf: PathBuf,
    /// Inter-container communication on the default network (`--icc`).
    pub icc: bool,
}

/// `netagent daemon --cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupChoice {
    /// The cgroup2 root: every process of the host.
    Root,
    Path(PathBuf),
    /// No socket hooks (and any left by an earlier daemon are detached).
    None,
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one), from /proc/self/mountinfo.
fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    cgroup2_mount(&mountinfo).context(
        "no cgroup2 file system is mounted: mount one, or run with --cgroup PATH or --cgroup none",
    )
}

/// The mount point of the first cgroup2 file system in a mountinfo text
/// (proc(5): the fifth field; the type follows the ` - ` separator).
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .find(|(_, fs)| fs.split_whitespace().next() == Some("cgroup2"))
        .and_then(|(mount, _)| mount.split_whitespace().nth(4))
        .map(PathBuf::from)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: DaemonConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(serve(config))
}

async fn serve(config: DaemonConfig) -> anyhow::Result<()> {
    // Every lock first, before anything is touched: a second daemon on the
    // same socket, state directory or bpffs must leave the first one's
    // datapath, interfaces and state alone.
    let _socket_lock = take_socket(&config.socket)?;
    let store = StateStore::open(&config.state_dir)?;
    let pins = PinDir::new(&config.bpffs);
    let _pins_lock = crate::datapath::bpf::lock_pins(&pins)?;
    if let Some(iface) = config
        .ifaces
        .iter()
        .find(|i| i.starts_with(crate::host::IFACE_PREFIX))
    {
        // Also refused by `Agent::serve_interfaces`; checked here too so
        // nothing (IP forwarding, the datapath) is touched first.
        bail!(
            "--iface {iface}: interfaces named {}* are netagent's own bridges and container veths, never served",
            crate::host::IFACE_PREFIX
        );
    }
    let pool = masquerade_pool(config.masquerade_ports)?;
    enable_ip_forward()?;
    let cgroup = match &config.cgroup {
        CgroupChoice::Root => Some(cgroup2_root()?),
        CgroupChoice::Path(path) => Some(path.clone()),
        CgroupChoice::None => None,
    };
    let mut datapath = BpfDatapath::load(pins)
        .with_context(|| format!("loading the datapath (pins in {})", config.bpffs.display()))?;
    datapath.set_config(&pool.config())?;
    match &cgroup {
        Some(cgroup) => datapath
            .attach_socket_hooks(cgroup)
            .with_context(|| format!("--cgroup {}", cgroup.display()))?,
        None => datapath.detach_socket_hooks()?,
    }

    let (connection, netlink, addr_events) =
        rtnetlink::new_multicast_connection(&ADDR_GROUPS).context("opening rtnetlink")?;
    tokio::spawn(connection);
    if let Some(addrs) = local_addresses(&netlink).await {
        apply_addresses(&mut datapath, &addrs, &config.ifaces);
    }
    match raise_fd_limit() {
        Ok(limit) => debug!(limit, "open-file limit raised for port reservations"),
        Err(e) => warn!(error = %e, "cannot raise the open-file limit"),
    }

    let mut agent = Agent::new(store, datapath, NetlinkHost::new(config.hold_ports))?;
    let report = agent.reconcile();
    info!(?report, "publication map reconciled with the state file");
    let unreserved = agent.reserve_published_ports();
    if unreserved > 0 {
        warn!(
            unreserved,
            "published ports other processes hold (see above)"
        );
    }
    if let Err(e) = agent.ensure_default_network() {
        error!(error = %e, "creating the default network");
    }
    agent
        .set_default_icc(config.icc)
        .context("setting --icc on the default network")?;
    let report = agent.reconcile_networks();
    info!(
        ?report,
        "networks and endpoints reconciled with the state file"
    );
    let served = agent.serve_interfaces(&config.ifaces, config.xdp_mode)?;
    info!(?served, "served interfaces");
    // Before the API: a restarted daemon's containers resolve again as
    // soon as it is ready.
    agent.set_resolver(
        crate::dns::Resolver::start(resolver_config(&config))
            .context("starting the embedded DNS resolver")?,
    );

    let listener = bind_socket(&config.socket)?;
    let agent = Arc::new(Mutex::new(agent));
    tokio::spawn(accept_loop(listener, Arc::clone(&agent)));
    let mut addr_events = AddrEvents::new(addr_events);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    info!(socket = %config.socket.display(), ifaces = ?config.ifaces, "netagent ready");
    let mut orphans = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = orphans.tick() => {
                let mut agent = agent.lock().map_err(|_| anyhow::anyhow!("agent lock poisoned"))?;
                agent.close_orphan_resolvers();
            }
            () = addr_events.changed() => {
                if let Some(addrs) = local_addresses(&netlink).await {
                    let mut agent = agent.lock().map_err(|_| anyhow::anyhow!("agent lock poisoned"))?;
                    apply_addresses(agent.datapath_mut(), &addrs, &config.ifaces);
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    let _ = fs::remove_file(&config.socket);
    info!("netagent stopping; the pinned datapath keeps forwarding");
    Ok(())
}

/// The resolver's configuration: the host's resolv.conf (an unreadable
/// one is logged and empty: no upstreams) and the daemon's `--dns`.
fn resolver_config(config: &DaemonConfig) -> crate::dns::ResolverConfig {
    let host = match fs::read_to_string(&config.resolv_conf) {
        Ok(text) => crate::dns::files::HostResolv::parse(&config.resolv_conf, &text),
        Err(e) => {
            warn!(path = %config.resolv_conf.display(), error = %e, "cannot read the host's resolv.conf: no upstream DNS servers unless --dns");
            crate::dns::files::HostResolv {
                path: config.resolv_conf.clone(),
                ..Default::default()
            }
        }
    };
    let resolver = crate::dns::ResolverConfig {
        host,
        upstreams: config.dns.clone(),
        etc_netns: PathBuf::from("/etc/netns"),
    };
    info!(upstreams = ?resolver.upstreams(), "embedded DNS resolver");
    resolver
}

/// Most API connections served at once; more wait in the listen backlog.
/// Together with [`API_IDLE_TIMEOUT`] it bounds the descriptors the API
/// can take, which `host::ports::FD_HEADROOM` keeps free.
pub const MAX_API_CONNECTIONS: usize = 64;
/// A connection that sends no complete request for this long is closed,
/// so idle clients cannot hold the connection slots.
const API_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepting pauses when the daemon is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts API connections forever: at most [`MAX_API_CONNECTIONS`] at
/// once, and an accept error (out of descriptors above all) backs off and
/// tries again instead of ending the daemon.
async fn accept_loop<D: Datapath + 'static, H: Host + 'static>(
    listener: UnixListener,
    agent: Arc<Mutex<Agent<D, H>>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_API_CONNECTIONS));
    let mut exhausted_since: Option<std::time::Instant> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Some(since) = exhausted_since.take() {
                    info!(after = ?since.elapsed(), "accepting API connections again");
                }
                let agent = Arc::clone(&agent);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, agent).await {
                        debug!(error = %e, "API connection ended");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                drop(slot);
                let out_of_files = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if exhausted_since.is_none() {
                    exhausted_since = Some(std::time::Instant::now());
                    warn!(error = %e, out_of_files, "accepting an API connection failed; backing off and retrying");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The netlink address monitor, reopened if it ever ends: `changed`
/// resolves whenever the host's addresses may have changed.
struct AddrEvents {
    events: Option<futures_util::stream::BoxStream<'static, ()>>,
}

impl AddrEvents {
    fn new<S, T>(events: S) -> Self
    where
        S: futures_util::Stream<Item = T> + Send + 'static,
    {
        Self {
            events: Some(events.map(|_| ()).boxed()),
        }
    }

    async fn changed(&mut self) {
        loop {
            if let Some(events) = &mut self.events {
                if events.next().await.is_some() {
                    return;
                }
                warn!("the netlink address monitor closed; reopening it");
                self.events = None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match rtnetlink::new_multicast_connection(&ADDR_GROUPS) {
                Ok((connection, _, events)) => {
                    tokio::spawn(connection);
                    self.events = Some(events.map(|_| ()).boxed());
                    // Addresses may have changed while it was down.
                    return;
                }
                Err(e) => warn!(error = %e, "reopening the netlink address monitor"),
            }
        }
    }
}

/// The host's IPv4 and IPv6 addresses; `None` (logged) if the dump failed, and the
/// The address events that change the local-address maps.
const ADDR_GROUPS: [rtnetlink::MulticastGroup; 2] = [
    rtnetlink::MulticastGroup::Ipv4Ifaddr,
    rtnetlink::MulticastGroup::Ipv6Ifaddr,
];

/// address maps then keep what they had until the next event.
async fn local_addresses(netlink: &rtnetlink::Handle) -> Option<Vec<(std::net::IpAddr, u32)>> {
    match localaddr::dump(netlink).await {
        Ok(addrs) => {
            debug!(?addrs, "local addresses");
            Some(addrs)
        }
        Err(e) => {
            error!(error = %e, "listing local addresses; the address maps keep their entries");
            None
        }
    }
}

/// Brings the local-address and masquerade-address maps in line with the
/// host's addresses; a failed write is logged and retried at the next
/// address event.
fn apply_addresses<D: Datapath>(
    datapath: &mut D,
    addrs: &[(std::net::IpAddr, u32)],
    ifaces: &[String],
) {
    if let Err(e) = datapath.set_local_addrs(addrs) {
        error!(error = %e, "updating the local-address map");
    }
    if let Err(e) = datapath.set_masq_addrs(&masq_addrs(ifaces, addrs)) {
        error!(error = %e, "updating the masquerade-address map");
    }
}

/// Takes the socket's lock file (`<socket>.lock`) and checks that no
/// daemon listens on the socket: held for the daemon's life, it makes the
/// socket this daemon's alone (a stale socket file is then safe to
/// replace).
fn take_socket(path: &Path) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd as _;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let lock_path = path.with_extension("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked || std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "another netagent daemon is serving {}; nothing was changed",
            path.display()
        );
    }
    Ok(lock)
}

/// `netagent teardown`: removes the pinned datapath and every bridge and
/// container interface the state names. The state file stays, so a later
/// `netagent daemon` rebuilds everything from it. Refused while a daemon
/// holds the state directory. Collects every failure.
pub fn teardown_all(pins: &PinDir, state_dir: &Path) -> anyhow::Result<()> {
    let _pins_lock = crate::datapath::bpf::lock_existing_pins(pins)?;
    let mut errors = Vec::new();
    if state_dir.join("state.json").exists() {
        let store = StateStore::open(state_dir)?;
        let state = store.load()?;
        let mut host = NetlinkHost::default();
        for c in &state.containers {
            for ep in c.endpoints() {
                if let Err(e) = host.remove_endpoint(&ep.host_ifname) {
                    errors.push(e.to_string());
                }
            }
        }
        for n in &state.networks {
            if let Err(e) = host.remove_bridge(&n.bridge) {
                errors.push(e.to_string());
            }
        }
    }
    if let Err(e) = crate::datapath::bpf::teardown(pins) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("teardown incomplete: {}", errors.join("; "))
    }
}

/// The masquerade port pool: the one given, or 1024-65535 minus the
/// host's ephemeral range. A given pool that overlaps the ephemeral range
/// is used, with a warning naming the overlap and the way out.
fn masquerade_pool(given: Option<MasqPorts>) -> anyhow::Result<MasqPorts> {
    let (lo, hi, reserved) = crate::host::ports::ephemeral_ports();
    let pool = match given {
        Some(pool) => pool,
        None => MasqPorts::outside_ephemeral(lo, hi)?,
    };
    let overlap = pool.ephemeral_overlap(lo, hi, &reserved);
    if !overlap.is_empty() {
        let spans: Vec<String> = overlap
            .iter()
            .map(|r| format!("{}-{}", r.lo, r.hi))
            .collect();
        warn!(
            pool = %pool,
            overlap = %spans.join(","),
            "masquerade ports overlap the host's ephemeral range ({lo}-{hi}): a host connection may pick a masqueraded flow's tuple; add them to net.ipv4.ip_local_reserved_ports"
        );
    }
    info!(pool = %pool, ports = pool.len(), "masquerade port pool");
    Ok(pool)
}

/// The masquerade addresses of each served interface: its first IPv4
/// address and its first IPv6 address that is neither link-local nor
/// loopback (the dump is sorted, so the choice is stable).
fn masq_addrs(
    ifaces: &[String],
    addrs: &[(std::net::IpAddr, u32)],
) -> Vec<(u32, std::net::IpAddr)> {
    ifaces
        .iter()
        .filter_map(|name| {
            let c = std::ffi::CString::new(name.as_str()).ok()?;
            // SAFETY: if_nametoindex with a valid C string.
            let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
            (index != 0).then_some(index)
        })
        .flat_map(|index| {
            let of = |v6: bool| {
                addrs
                    .iter()
                    .find(|(ip, i)| *i == index && ip.is_ipv6() == v6 && masquerades(ip))
                    .map(|(ip, _)| (index, *ip))
            };
            [of(false), of(true)].into_iter().flatten()
        })
        .collect()
}

/// Whether `ip` may be a masquerade source: not loopback, and for IPv6 not
/// link-local (a link-local source cannot leave its link).
fn masquerades(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => !v4.is_loopback(),
        std::net::IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
    }
}

/// The datapath translates and passes packets to the stack, which must
/// forward them to the container (Docker enables this too).
fn enable_ip_forward() -> anyhow::Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let current = fs::read_to_string(PATH).with_context(|| format!("reading {PATH}"))?;
    if current.trim() != "1" {
        fs::write(PATH, "1").with_context(|| format!("enabling IPv4 forwarding ({PATH})"))?;
        info!("enabled IPv4 forwarding");
    }
    Ok(())
}

/// Binds the API socket, root-only (mode 0600). A stale socket file (of a
/// daemon that died) is replaced: [`take_socket`] made sure no daemon is
/// behind it.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Serves one connection: any number of request lines, one response each.
/// A request that is not UTF-8 or not JSON gets an error reply; a
/// connection idle for [`API_IDLE_TIMEOUT`] is closed.
async fn serve_connection<D: Datapath, H: Host>(
    stream: UnixStream,
    agent: Arc<Mutex<Agent<D, H>>>,
) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if peer.uid() != 0 {
        let response = Response::Error {
            message: format!(
                "permission denied: the netagent API is root only (uid {})",
                peer.uid()
            ),
            kind: Some(ErrorKind::Invalid),
        };
        return write_response(&mut write, &response).await;
    }
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64);
        let read = limited.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(API_IDLE_TIMEOUT, read).await {
            Ok(n) => n?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let response = if line.last() != Some(&b'\n') && n >= MAX_REQUEST_BYTES {
            Response::Error {
                message: format!("request longer than {MAX_REQUEST_BYTES} bytes"),
                kind: Some(ErrorKind::Invalid),
            }
        } else {
            match std::str::from_utf8(&line) {
                Err(e) => Response::Error {
                    message: format!(
                        "malformed request: not UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                    kind: Some(ErrorKind::Invalid),
                },
                Ok(text) => match serde_json::from_str::<Request>(text) {
                    Ok(request) => match agent.lock() {
                        Ok(mut agent) => dispatch(&mut agent, request),
                        Err(_) => Response::Error {
                            message: "internal error: agent lock poisoned".into(),
                            kind: Some(ErrorKind::Internal),
                        },
                    },
                    Err(e) => Response::Error {
                        message: format!("malformed request: {e}"),
                        kind: Some(ErrorKind::Invalid),
                    },
                },
            }
        };
        write_response(&mut write, &response).await?;
    }
}

async fn write_response(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// Carries out one API request.
pub fn dispatch<D: Datapath, H: Host>(agent: &mut Agent<D, H>, request: Request) -> Response {
    let result = match request {
        Request::Publish { spec } => parse(&spec)
            .and_then(|s| agent.publish(s))
            .map(|publication| Response::Published { publication }),
        Request::PublishMany { specs } => specs
            .iter()
            .map(|s| parse(s))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|specs| agent.publish_many(&specs))
            .map(|publications| Response::PublishedMany { publications }),
        Request::Unpublish { spec } => parse(&spec)
            .and_then(|s| agent.unpublish(s))
            .map(|publication| Response::Unpublished { publication }),
        Request::List { container_ip } => Ok(Response::Publications {
            publications: agent.list(container_ip),
        }),
        Request::Stats => agent.stats().map(|stats| Response::Stats { stats }),
        Request::NetworkCreate(req) => agent
            .network_create(req)
            .map(|network| Response::Network { network }),
        Request::NetworkRm { name } => agent
            .network_rm(&name)
            .map(|info| Response::NetworkInfo { info }),
        Request::NetworkLs => Ok(Response::Networks {
            networks: agent.network_list(),
        }),
        Request::NetworkInspect { name } => agent
            .network_inspect(&name)
            .map(|info| Response::NetworkInfo { info }),
        Request::NetworkConnect(req) => {
            agent
                .network_connect(req)
                .map(|endpoint| Response::Endpoint {
                    endpoint: Some(endpoint),
                })
        }
        Request::NetworkDisconnect { network, container } => agent
            .network_disconnect(&network, &container)
            .map(|endpoint| Response::Endpoint { endpoint }),
        Request::ContainerAttach(req) => {
            agent
                .container_attach(req)
                .map(|attached| Response::Container {
                    info: attached.info,
                    warnings: attached.warnings,
                })
        }
        Request::ContainerDetach { name } => agent
            .container_detach(&name)
            .map(|container| Response::Detached { container }),
        Request::ContainerLs => Ok(Response::Containers {
            containers: agent.container_list(),
        }),
        Request::ContainerInspect { name } => {
            agent
                .container_inspect(&name)
                .map(|info| Response::Container {
                    info,
                    warnings: Vec::new(),
                })
        }
        Request::CniAdd(req) => agent
            .cni_add(req)
            .map(|attachment| Response::CniAttachment { attachment }),
        Request::CniDel { key } => agent
            .cni_del(&key)
            .map(|removed| Response::CniDeleted { removed }),
        Request::CniCheck { key } => agent
            .cni_check(&key)
            .map(|attachment| Response::CniAttachment { attachment }),
        Request::CniGc { network, valid } => agent
            .cni_gc(&network, &valid)
            .map(|removed| Response::CniCollected { removed }),
        Request::ContainerFile { name, file } => agent
            .container_file(&name, file)
            .map(|text| Response::Text { text }),
        Request::CniStatus => Ok(Response::CniStatus {
            status: agent.cni_status(),
        }),
        Request::ContainerPorts { name, filter } => filter
            .map(|f| {
                f.parse::<ExposedPorts>()
                    .map_err(AgentError::from)
                    .map(|e| (e.ports.lo, Some(e.proto)))
            })
            .transpose()
            .and_then(|filter| agent.container_ports(&name, filter))
            .map(|ports| {
                let ipv6 = ports
                    .iter()
                    .map(|s| agent.state().served_on_ipv6(s))
                    .collect();
                Response::Ports { ports, ipv6 }
            }),
    };
    result.unwrap_or_else(|e| Response::Error {
        message: e.to_string(),
        kind: Some(e.kind()),
    })
}

fn parse(spec: &str) -> Result<PortSpec, AgentError> {
    Ok(spec.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{datapath::fake::FakeDatapath, host::fake::FakeHost};

    /// The cgroup2 mount is found on a unified host (systemd's
    /// /sys/fs/cgroup) and on a hybrid one (cgroup v1 controllers, v2 at
    /// /sys/fs/cgroup/unified); none on a v1-only host.
    #[test]
    fn the_cgroup2_mount_is_read_from_mountinfo() {
        let unified = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "\
26 24 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
28 26 0:26 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount(&hybrid.replace("cgroup2", "cgroup")), None);
    }

    #[test]
    fn dispatch_reports_errors_as_messages_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut agent = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
        let publish = |spec: &str| Request::Publish { spec: spec.into() };
        assert!(matches!(
            dispatch(&mut agent, publish("5000->10.0.0.2:80/udp")),
            Response::Published { .. }
        ));
        for bad in ["5000->10.0.0.2:80/udp", "nonsense", "99999->10.0.0.2:80"] {
            match dispatch(&mut agent, publish(bad)) {
                Response::Error { message, kind } => {
                    assert!(!message.is_empty(), "{bad}");
                    assert!(kind.is_some(), "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        match dispatch(&mut agent, Request::List { container_ip: None }) {
            Response::Publications { publications } => assert_eq!(publications.len(), 1),
            other => panic!("{other:?}"),
        }
    }
}
