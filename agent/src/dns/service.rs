//! The embedded resolver at work: a thread of the daemon with a runtime
//! of its own, so no API request (a 50,000-port publish holds the agent
//! for a while) ever delays a query.
//!
//! Each container with a resolver has a UDP socket and a TCP listener on
//! 127.0.0.11 in its own namespace, made there by that namespace's
//! netlink worker (`Host::resolver_sockets`): a socket stays in the
//! namespace it was made in, whichever thread uses it, so the resolver
//! thread never changes namespace. They listen on a port the kernel
//! picks, and the datapath's loopback program (`na_tc_dns`, at TCX egress
//! of the container's `lo`) turns 127.0.0.11:53 into that port and back,
//! where Docker uses DNAT rules in the container: no netfilter, and port
//! 53 stays free for the container's own servers. (A kernel that refuses
//! the program gets sockets on 127.0.0.11:53 itself.) The socket a query
//! arrived on says who asked. The agent hands the thread sockets and directories
//! after every change ([`Resolver::sync`]); queries read the newest
//! directory, never the agent's state.
//!
//! What no container answers is forwarded (`forward`): to the servers of
//! the host's configuration from the daemon's namespace, to a container's
//! own servers from its namespace, through sockets the `nssock` thread
//! makes there (Docker's rule, see `directory::Upstream`).
//!
//! The sockets end with the daemon: a restarted daemon makes them again
//! when it starts, before it serves its API.

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::op::ResponseCode;
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::{
    answer::{Outcome, Transport, answer, header_error, servfail},
    directory::{Directory, Upstream},
    files::{self, HostResolv},
    forward::{Origin, UPSTREAM_TIMEOUT, forward, read_framed},
};
use crate::{
    datapath::EndpointPrograms,
    host::{Host, NetnsId, ResolverSockets, nssock::NamespaceSockets},
    model::NetworkMode,
    state::DesiredState,
};

/// Forwards in flight per container; beyond them a query is REFUSED at
/// once (Docker: 1024, refused after its 4 s wait).
pub const MAX_FORWARDS: usize = 1024;
/// TCP connections per container at once; more wait in the backlog.
const MAX_TCP: usize = 64;
/// A TCP connection with no complete query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What the daemon's resolver is configured with.
#[derive(Clone, Debug, Default)]
pub struct ResolverConfig {
    /// The host's resolv.conf (search domains, options, and its servers
    /// unless `upstreams` replaces them).
    pub host: HostResolv,
    /// The daemon's `--dns` servers; empty: the host's.
    pub upstreams: Vec<std::net::SocketAddr>,
    /// Where `ip netns exec` finds a namespace's files (`/etc/netns`).
    pub etc_netns: PathBuf,
}

impl ResolverConfig {
    /// The servers names go to when a container has no `--dns` of its own.
    pub fn upstreams(&self) -> Vec<Upstream> {
        if self.upstreams.is_empty() {
            self.host.upstreams()
        } else {
            self.upstreams
                .iter()
                .map(|addr| Upstream::of_host(*addr, false))
                .collect()
        }
    }
}

enum Command {
    Open {
        id: String,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        /// Where its forwarded queries leave from.
        origin: Origin,
    },
    Close {
        id: String,
    },
}

/// What every listener shares: the rotation and the counters.
#[derive(Default)]
struct Shared {
    /// Counts queries, so multi-address answers rotate.
    turn: AtomicUsize,
    queries: AtomicU64,
    answered: AtomicU64,
    forwarded: AtomicU64,
    failovers: AtomicU64,
    servfail: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
}

/// What the agent keeps of a container's open resolver.
struct Opened {
    netns: PathBuf,
    netns_id: Option<NetnsId>,
    /// The namespace cookie and the resolver's port there (53 without
    /// the loopback program).
    cookie: u64,
    port: u16,
    /// The loopback program's link: detached when this is dropped.
    link: Option<std::os::fd::OwnedFd>,
}

/// The agent's handle on the resolver thread.
pub struct Resolver {
    config: ResolverConfig,
    commands: mpsc::UnboundedSender<Command>,
    directory: watch::Sender<Arc<Directory>>,
    /// Containers with sockets, by ID.
    open: HashMap<String, Opened>,
    /// Containers whose sockets could not be made, with the error (logged
    /// once, tried again at every change).
    failed: HashMap<String, String>,
    /// The `/etc/netns/NAME` directories written, by container ID.
    files: HashMap<String, PathBuf>,
    /// What each file was last written with: a change rewrites only the
    /// files whose text changed, without reading any.
    texts: HashMap<PathBuf, String>,
    shared: Arc<Shared>,
    /// Makes the sockets that ask containers' own servers in their
    /// namespaces.
    ns_sockets: NamespaceSockets,
}

impl Resolver {
    /// Starts the resolver thread.
    pub fn start(config: ResolverConfig) -> std::io::Result<Self> {
        let (commands, queue) = mpsc::unbounded_channel();
        let (directory, watcher) = watch::channel(Arc::new(Directory::default()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ns_sockets = NamespaceSockets::new()?;
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("netagent-dns".into())
            .spawn(move || runtime.block_on(serve(queue, watcher, thread_shared)))?;
        Ok(Self {
            config,
            commands,
            directory,
            open: HashMap::new(),
            failed: HashMap::new(),
            files: HashMap::new(),
            texts: HashMap::new(),
            shared,
            ns_sockets,
        })
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The counters since the daemon started, and how many containers
    /// have a resolver now.
    pub fn stats(&self) -> crate::api::DnsStats {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.shared;
        crate::api::DnsStats {
            resolvers: self.open.len() as u64,
            queries: n(&s.queries),
            answered: n(&s.answered),
            forwarded: n(&s.forwarded),
            failovers: n(&s.failovers),
            servfail: n(&s.servfail),
            refused: n(&s.refused),
            dropped: n(&s.dropped),
        }
    }

    /// Brings the resolver in line with `state`: sockets for the
    /// containers that have a resolver (made by `host` in their
    /// namespaces, with `datapath`'s loopback program and its port map),
    /// none for the others, the new directory, and every container's
    /// files. Best effort: a failure is logged and tried again at the
    /// next change.
    pub fn sync<H: Host, D: EndpointPrograms>(
        &mut self,
        state: &DesiredState,
        host: &mut H,
        datapath: &mut D,
    ) {
        let dir = Arc::new(Directory::build(state, &self.config.upstreams()));
        // First: a new container's sockets must find it in the directory.
        self.directory.send_replace(Arc::clone(&dir));
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(id, o)| {
                dir.asker(id)
                    .is_none_or(|a| a.netns != o.netns || a.netns_id != o.netns_id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.open.remove(&id);
            let _ = self.commands.send(Command::Close { id });
        }
        self.failed.retain(|id, _| dir.asker(id).is_some());
        for asker in dir.askers() {
            if self.open.contains_key(&asker.id) {
                continue;
            }
            // The path must still name the container's namespace: a
            // reused one (`/proc/PID/ns/net`) is someone else's, where no
            // socket or program of ours belongs.
            if let (Some(was), Ok(now)) = (asker.netns_id, host.netns_id(&asker.netns))
                && was != now
            {
                let e = format!("{} names another namespace now", asker.netns.display());
                self.note_failure(asker, e);
                continue;
            }
            match host.resolver_sockets(&asker.netns, datapath.resolver_program()) {
                Ok(ResolverSockets {
                    udp,
                    tcp,
                    port,
                    cookie,
                    link,
                    netns,
                }) => {
                    self.failed.remove(&asker.id);
                    self.open.insert(
                        asker.id.clone(),
                        Opened {
                            netns: asker.netns.clone(),
                            netns_id: asker.netns_id,
                            cookie,
                            port,
                            link,
                        },
                    );
                    let origin = self.origin(netns);
                    let _ = self.commands.send(Command::Open {
                        id: asker.id.clone(),
                        udp,
                        tcp,
                        origin,
                    });
                }
                Err(e) => self.note_failure(asker, e.to_string()),
            }
        }
        let ports = self.translated_ports();
        if let Err(e) = datapath.set_resolver_ports(&ports) {
            warn!(error = %e, "updating the resolver-port map");
        }
        self.sync_files(state);
    }

    /// Where queries from the container in `netns` are forwarded from:
    /// no namespace to enter when it is the daemon's own.
    fn origin(&self, netns: OwnedFd) -> Origin {
        Origin {
            sockets: self.ns_sockets.clone(),
            netns: (!self.ns_sockets.is_home(&netns)).then(|| Arc::new(netns)),
        }
    }

    /// Records why `asker` has no resolver, logging it once.
    fn note_failure(&mut self, asker: &super::directory::Asker, e: String) {
        if self.failed.get(&asker.id) != Some(&e) {
            warn!(container = %asker.name, error = %e, "no embedded DNS resolver for this container");
            self.failed.insert(asker.id.clone(), e);
        }
    }

    /// Closes the resolvers of namespaces their path no longer names (a
    /// runtime deleted the namespace without a detach): their sockets
    /// would keep the namespace, and its veth, alive. Called every second
    /// by the daemon; a later change tries them again (and fails, logged
    /// once, while the path is gone).
    pub fn close_orphans<H: Host, D: EndpointPrograms>(&mut self, host: &mut H, datapath: &mut D) {
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| {
                host.netns_id(&o.netns)
                    .map_or(true, |id| o.netns_id.is_some_and(|was| was != id))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for id in gone {
            if let Some(o) = self.open.remove(&id) {
                info!(container = %id, netns = %o.netns.display(), "namespace gone: its embedded DNS resolver closed");
                self.failed.insert(id.clone(), "namespace gone".into());
            }
            let _ = self.commands.send(Command::Close { id });
        }
        let ports = self.translated_ports();
        if let Err(e) = datapath.set_resolver_ports(&ports) {
            warn!(error = %e, "updating the resolver-port map");
        }
    }

    /// The open resolvers whose port the loopback program translates.
    fn translated_ports(&self) -> Vec<(u64, u16)> {
        self.open
            .values()
            .filter(|o| o.link.is_some())
            .map(|o| (o.cookie, o.port))
            .collect()
    }

    /// Writes every container's hosts and resolv.conf under
    /// `/etc/netns/NAME`, and removes those of containers that are gone.
    fn sync_files(&mut self, state: &DesiredState) {
        let upstreams = self.config.upstreams();
        let mut written = HashMap::new();
        for c in &state.containers {
            if !matches!(c.mode, NetworkMode::Bridge { .. }) {
                continue;
            }
            let Some(dir) = files::etc_dir(&self.config.etc_netns, &c.netns) else {
                continue;
            };
            for (file, text) in [
                ("hosts", files::hosts(state, c)),
                (
                    "resolv.conf",
                    files::resolv_conf(c, &self.config.host, &upstreams),
                ),
            ] {
                let path = dir.join(file);
                if self.texts.get(&path) == Some(&text) {
                    continue;
                }
                match files::write(&path, &text) {
                    Ok(()) => {
                        self.texts.insert(path, text);
                    }
                    Err(e) => {
                        warn!(container = %c.name, file, error = %e, "writing the container's file");
                    }
                }
            }
            written.insert(c.id.clone(), dir);
        }
        for (id, dir) in &self.files {
            if written.get(id) != Some(dir) && !written.values().any(|d| d == dir) {
                files::remove(dir);
                self.texts.retain(|path, _| !path.starts_with(dir));
            }
        }
        self.files = written;
    }
}

/// The resolver thread: opens and closes containers' listeners as told.
async fn serve(
    mut queue: mpsc::UnboundedReceiver<Command>,
    dir: watch::Receiver<Arc<Directory>>,
    shared: Arc<Shared>,
) {
    let mut listeners: HashMap<String, [JoinHandle<()>; 2]> = HashMap::new();
    while let Some(command) = queue.recv().await {
        match command {
            Command::Open {
                id,
                udp,
                tcp,
                origin,
            } => match listen(&id, udp, tcp, origin, &dir, &shared) {
                Ok(tasks) => {
                    debug!(container = %id, "embedded DNS listening");
                    if let Some(old) = listeners.insert(id, tasks) {
                        old.iter().for_each(JoinHandle::abort);
                    }
                }
                Err(e) => warn!(container = %id, error = %e, "embedded DNS sockets unusable"),
            },
            Command::Close { id } => {
                if let Some(tasks) = listeners.remove(&id) {
                    tasks.iter().for_each(JoinHandle::abort);
                    debug!(container = %id, "embedded DNS closed");
                }
            }
        }
    }
    info!("embedded DNS stopping");
}

fn listen(
    id: &str,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    origin: Origin,
    dir: &watch::Receiver<Arc<Directory>>,
    shared: &Arc<Shared>,
) -> std::io::Result<[JoinHandle<()>; 2]> {
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let udp = Arc::new(UdpSocket::from_std(udp)?);
    let tcp = TcpListener::from_std(tcp)?;
    let ctx = Context {
        id: id.to_owned(),
        dir: dir.clone(),
        shared: Arc::clone(shared),
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        origin,
    };
    Ok([
        tokio::spawn(serve_udp(udp, ctx.clone())),
        tokio::spawn(serve_tcp(tcp, ctx)),
    ])
}

/// What a container's listeners share.
#[derive(Clone)]
struct Context {
    id: String,
    dir: watch::Receiver<Arc<Directory>>,
    shared: Arc<Shared>,
    forwards: Arc<Semaphore>,
    origin: Origin,
}

impl Context {
    /// The outcome for one query, from the newest directory, counted.
    fn outcome(&self, query: &[u8], transport: Transport) -> Outcome {
        let c = &self.shared;
        c.queries.fetch_add(1, Ordering::Relaxed);
        let dir = Arc::clone(&self.dir.borrow());
        let outcome = match dir.asker(&self.id) {
            Some(asker) => answer(
                query,
                transport,
                &dir,
                asker,
                c.turn.fetch_add(1, Ordering::Relaxed),
            ),
            // Detached a moment ago: its listeners are being closed.
            None => header_error(query, ResponseCode::Refused),
        };
        let counter = match &outcome {
            Outcome::Answer(_) => &c.answered,
            Outcome::Forward(_) => &c.forwarded,
            Outcome::Drop => &c.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// `query` asked of `upstreams`: their answer, else SERVFAIL.
    async fn forward(
        &self,
        query: &[u8],
        transport: Transport,
        upstreams: &[Upstream],
    ) -> Option<Vec<u8>> {
        let c = &self.shared;
        let answer = forward(
            query,
            transport,
            upstreams,
            &self.origin,
            UPSTREAM_TIMEOUT,
            &c.failovers,
        )
        .await;
        if answer.is_some() {
            return answer;
        }
        c.servfail.fetch_add(1, Ordering::Relaxed);
        servfail(query)
    }

    /// REFUSED for `query` (too many forwards in flight), counted.
    fn refuse(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        match header_error(query, ResponseCode::Refused) {
            Outcome::Answer(bytes) => Some(bytes),
            _ => None,
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, ctx: Context) {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                debug!(error = %e, "embedded DNS: receiving");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let query = &buf[..n];
        match ctx.outcome(query, Transport::Udp) {
            Outcome::Answer(bytes) => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Outcome::Drop => {}
            Outcome::Forward(upstreams) => {
                let Ok(permit) = Arc::clone(&ctx.forwards).try_acquire_owned() else {
                    if let Some(bytes) = ctx.refuse(query) {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    continue;
                };
                let query = query.to_vec();
                let socket = Arc::clone(&socket);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Some(bytes) = ctx.forward(&query, Transport::Udp, &upstreams).await {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Context) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    serve_tcp_connection(stream, &ctx).await;
                    drop(slot);
                });
            }
            Err(e) => {
                debug!(error = %e, "embedded DNS: accepting");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Queries on one TCP connection, answered in order, until it closes or
/// idles.
async fn serve_tcp_connection(mut stream: TcpStream, ctx: &Context) {
    while let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
        let answer = match ctx.outcome(&query, Transport::Tcp) {
            Outcome::Answer(bytes) => Some(bytes),
            Outcome::Drop => None,
            Outcome::Forward(upstreams) => ctx.forward(&query, Transport::Tcp, &upstreams).await,
        };
        let Some(answer) = answer else { continue };
        let Ok(len) = u16::try_from(answer.len()) else {
            continue;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
