//! Asking the upstream servers what no container answers.
//!
//! Docker's rules (REFERENCE §1.9): at most three servers, in order, each
//! asked once with a timeout; a timeout, SERVFAIL or REFUSED moves on to
//! the next; any other answer (NXDOMAIN, an empty one) is the answer.
//! A query goes up the way it came: UDP over UDP (a truncated answer is
//! passed back as it is, and the asker asks again over TCP), TCP over TCP.
//! Each UDP query leaves from a fresh socket (a random source port) with
//! an ID of its own, and only an answer from the server asked, with that
//! ID, is taken: a spoofed answer must guess both. Each server is asked
//! from the namespace its [`Upstream`] names ([`Origin`]): the
//! container's for its own servers, the daemon's for the host's.

use std::{
    io,
    net::SocketAddr,
    os::fd::OwnedFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream, UdpSocket},
    time::timeout,
};
use tracing::debug;

use super::{
    answer::{Transport, fails_over},
    directory::Upstream,
};
use crate::host::nssock::NamespaceSockets;

/// Where one container's forwarded queries leave from (see
/// [`Upstream`]): its namespace, through sockets `sockets` makes there,
/// or the daemon's for a server asked from the host.
#[derive(Clone, Debug)]
pub struct Origin {
    pub sockets: NamespaceSockets,
    /// The container's namespace; `None` when it is the daemon's own.
    pub netns: Option<Arc<OwnedFd>>,
}

impl Origin {
    /// The namespace `upstream` is asked from, `None` for the daemon's.
    fn namespace(&self, upstream: &Upstream) -> Option<&Arc<OwnedFd>> {
        self.netns.as_ref().filter(|_| !upstream.from_host)
    }

    /// A fresh UDP socket connected to `upstream` (the kernel picks a
    /// random port for it).
    async fn udp(&self, upstream: &Upstream) -> io::Result<UdpSocket> {
        let socket = match self.namespace(upstream) {
            None => UdpSocket::bind(unspecified(upstream.addr)).await?,
            Some(netns) => {
                let fd = self
                    .sockets
                    .socket(netns, domain(upstream.addr), libc::SOCK_DGRAM)
                    .await?;
                UdpSocket::from_std(std::net::UdpSocket::from(fd))?
            }
        };
        // Connected: the kernel drops datagrams from anyone else.
        socket.connect(upstream.addr).await?;
        Ok(socket)
    }

    /// A TCP connection to `upstream`.
    async fn tcp(&self, upstream: &Upstream) -> io::Result<TcpStream> {
        match self.namespace(upstream) {
            None => TcpStream::connect(upstream.addr).await,
            Some(netns) => {
                let fd = self
                    .sockets
                    .socket(netns, domain(upstream.addr), libc::SOCK_STREAM)
                    .await?;
                TcpSocket::from_std_stream(std::net::TcpStream::from(fd))
                    .connect(upstream.addr)
                    .await
            }
        }
    }
}

fn domain(addr: SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// How long one server has to answer (Docker's: 4 s).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// The first usable answer to `query` from `upstreams`, with the asker's
/// ID; `None` when none gave one. Each server passed over counts in
/// `failovers`.
pub async fn forward(
    query: &[u8],
    transport: Transport,
    upstreams: &[Upstream],
    origin: &Origin,
    wait: Duration,
    failovers: &AtomicU64,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let asker_id = [query[0], query[1]];
    for upstream in upstreams {
        let id = random_id();
        let mut ours = query.to_vec();
        ours[..2].copy_from_slice(&id);
        let answer = match transport {
            Transport::Udp => timeout(wait, ask_udp(&ours, origin, upstream, id)).await,
            Transport::Tcp => timeout(wait, ask_tcp(&ours, origin, upstream, id)).await,
        };
        match answer {
            Ok(Ok(mut answer)) if !fails_over(&answer) => {
                answer[..2].copy_from_slice(&asker_id);
                return Some(answer);
            }
            Ok(Ok(_)) => {
                debug!(upstream = %upstream.addr, "upstream failed the query; trying the next")
            }
            Ok(Err(e)) => {
                debug!(upstream = %upstream.addr, error = %e, "upstream unreachable; trying the next")
            }
            Err(_) => debug!(upstream = %upstream.addr, "upstream timed out; trying the next"),
        }
        failovers.fetch_add(1, Ordering::Relaxed);
    }
    None
}

async fn ask_udp(
    query: &[u8],
    origin: &Origin,
    upstream: &Upstream,
    id: [u8; 2],
) -> io::Result<Vec<u8>> {
    let socket = origin.udp(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(
    query: &[u8],
    origin: &Origin,
    upstream: &Upstream,
    id: [u8; 2],
) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = origin.tcp(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let answer = read_framed(&mut stream).await?;
        if is_answer_to(&answer, id) {
            return Ok(answer);
        }
    }
}

/// One length-prefixed DNS message from a TCP stream (RFC 1035 4.2.2).
pub async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Whether `msg` is a response with ID `id`.
fn is_answer_to(msg: &[u8], id: [u8; 2]) -> bool {
    msg.len() >= 12 && msg[..2] == id && msg[2] & 0x80 != 0
}

/// A random query ID.
fn random_id() -> [u8; 2] {
    let mut id = [0u8; 2];
    // SAFETY: getrandom into a buffer we own; a short read leaves zeros,
    // which is still an ID.
    unsafe {
        libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0);
    }
    id
}
