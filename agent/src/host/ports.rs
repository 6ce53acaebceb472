//! Host port reservations: a socket bound to each published (IP, port,
//! protocol), held by the daemon, so no other process can take the port
//! while netagent forwards it (Docker 29 does the same).
//!
//! - TCP: bound, never listening. Nothing reaches it: published traffic is
//!   translated before the stack, and a local connect gets a plain refusal.
//! - UDP: bound, with a classic BPF filter that drops everything, so no
//!   datagram ever queues on it.
//! - No SO_REUSEADDR: with it, another SO_REUSEADDR socket could share a
//!   non-listening TCP port.
//! - No IP_FREEBIND: a host address the host does not have is refused
//!   (`EADDRNOTAVAIL`, Docker's "cannot assign requested address"), as
//!   Docker refuses it, rather than published where nothing can arrive.
//! - `0.0.0.0` is served on IPv6 too (the host's IPv6 sockets reach it,
//!   and a dual-stack container's on `[::]`), so its reservation holds
//!   `[::]` IPv6-only as well, as Docker binds `-p 8080:80` on both
//!   families; on a host without IPv6 only `0.0.0.0`. Unheld
//!   (`--hold-ports=false`), only `0.0.0.0` is checked: a check is a
//!   moment's answer there anyway, and the twin's would double the cost of
//!   a bulk publication (0.31 s -> 0.49 s for 50,000 on 2 vCPUs).

use std::{
    collections::{HashMap, HashSet},
    io,
    mem::size_of,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use super::{HostError, HostPort};
use crate::spec::{Proto, host_port_str};

/// Open files the daemon keeps for everything but held ports: its API
/// connections (at most `server::MAX_API_CONNECTIONS`), netlink sockets,
/// BPF maps, programs and links. Holding a port never eats into them, so
/// the API keeps answering however many ports are published.
pub const FD_HEADROOM: u64 = 256;

/// The held sockets, by what they hold.
#[derive(Debug)]
pub struct Reservations {
    held: HashMap<HostPort, Held>,
    /// Off (`netagent daemon --hold-ports=false`): a port is still checked
    /// against other processes (bound and let go at once) but not held, for
    /// hosts with more publications than the daemon may open files.
    hold: bool,
}

impl Default for Reservations {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Reservations {
    pub fn new(hold: bool) -> Self {
        Self {
            held: HashMap::new(),
            hold,
        }
    }

    pub fn reserve(&mut self, port: HostPort) -> Result<(), HostError> {
        self.reserve_all(&[port])
    }

    /// Reserves every port in `ports`, or none: on the first port that
    /// cannot be bound (first in `ports`' order, whichever thread met it
    /// first), the ports this call took are let go and that port's error
    /// is returned. Ports already held are kept as they are.
    ///
    /// A bulk publication checks tens of thousands of ports, and each
    /// check is a socket, a bind and (unheld) a close: kernel work per
    /// port, not per call. So the binds run on up to one thread per CPU
    /// (each inherits the caller's network namespace), in slices of at
    /// least [`MIN_BINDS_PER_THREAD`].
    pub fn reserve_all(&mut self, ports: &[HostPort]) -> Result<(), HostError> {
        let mut seen = HashSet::with_capacity(ports.len());
        let new: Vec<HostPort> = ports
            .iter()
            .filter(|p| !self.held.contains_key(p) && seen.insert(**p))
            .copied()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if self.hold {
            let limit = fd_limit();
            let open: usize = self.held.values().map(Held::sockets).sum();
            // A wildcard one may take two (its `[::]` twin).
            let more: usize = new.iter().map(|p| sockets_for(*p)).sum();
            if (open + more) as u64 + FD_HEADROOM > limit {
                let port = new[0];
                let first = format!("{}/{}", host_port_str(port.ip, port.port), port.proto);
                let what = match new.len() {
                    1 => format!("host port {first}"),
                    n => format!("{n} more host ports (from {first})"),
                };
                return Err(HostError::Other(format!(
                    "cannot hold {what}: {} ports are held in {open} sockets and the daemon's open-file limit is {limit} ({FD_HEADROOM} are kept for its API and the kernel); raise the limit (ulimit -n) or run the daemon with --hold-ports=false",
                    self.held.len()
                )));
            }
        }
        let bound = bind_in_parallel(&new, self.hold)?;
        self.held.extend(new.into_iter().zip(bound));
        Ok(())
    }

    pub fn release(&mut self, port: HostPort) {
        self.held.remove(&port);
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The sockets of one reservation: its own, and for `0.0.0.0` the
/// `[::]` twin (none on a host without IPv6). Dropping closes both.
#[derive(Debug)]
struct Held {
    _socket: OwnedFd,
    twin: Option<OwnedFd>,
}

impl Held {
    /// Open descriptors it holds.
    fn sockets(&self) -> usize {
        1 + usize::from(self.twin.is_some())
    }
}

/// The most descriptors a reservation of `port` takes.
fn sockets_for(port: HostPort) -> usize {
    if port.ip == IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) {
        2
    } else {
        1
    }
}

/// The fewest binds a thread of [`Reservations::reserve_all`] is started
/// for: a bind check costs about 8 µs, starting a thread some tens, so
/// below that the thread costs more than it saves.
const MIN_BINDS_PER_THREAD: usize = 128;

/// Binds every port (see [`Reservations::reserve_all`]): with `hold`, the
/// bound sockets in `ports`' order; without, none (each is closed as soon
/// as its bind has succeeded). On a failure, every socket this call bound
/// is closed and the error of the first failing port in `ports` returned.
fn bind_in_parallel(ports: &[HostPort], hold: bool) -> Result<Vec<Held>, HostError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(ports.len().div_ceil(MIN_BINDS_PER_THREAD)).max(1);
    let slice = ports.len().div_ceil(threads);
    // Each slice stops at its first failure; the failure with the lowest
    // index in `ports` is the one reported, so the answer does not depend
    // on how the threads were scheduled.
    let bind_slice = |(n, slice): (usize, &[HostPort])| -> Result<Vec<Held>, (usize, HostError)> {
        let mut fds = Vec::with_capacity(if hold { slice.len() } else { 0 });
        for (i, &port) in slice.iter().enumerate() {
            match bind_with_twin(port, hold) {
                Ok(held) if hold => fds.push(held),
                Ok(_checked) => {}
                Err((failed, e)) => return Err((n + i, reserve_error(failed, e))),
            }
        }
        Ok(fds)
    };
    let starts = (0..ports.len()).step_by(slice);
    let results: Vec<_> = if threads == 1 {
        vec![bind_slice((0, ports))]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = starts
                .zip(ports.chunks(slice))
                .map(|job| scope.spawn(move || bind_slice(job)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a port-binding thread panicked"))
                .collect()
        })
    };
    let mut bound = Vec::with_capacity(if hold { ports.len() } else { 0 });
    let mut first_failure: Option<(usize, HostError)> = None;
    for result in results {
        match result {
            Ok(fds) => bound.extend(fds),
            Err((i, e)) => {
                if first_failure.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_failure = Some((i, e));
                }
            }
        }
    }
    match first_failure {
        // Dropping `bound` closes what this call took.
        Some((_, e)) => Err(e),
        None => Ok(bound),
    }
}

/// The error for a port whose bind failed, in Docker's words where Docker
/// has some.
fn reserve_error(port: HostPort, e: io::Error) -> HostError {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => HostError::PortInUse {
            ip: port.ip,
            port: port.port,
            proto: port.proto,
        },
        Some(libc::EADDRNOTAVAIL) => HostError::NotLocal {
            ip: port.ip,
            port: port.port,
            proto: port.proto,
        },
        Some(libc::EMFILE | libc::ENFILE) => HostError::Io {
            op: format!(
                "reserving host port {}/{} (every published port holds a socket: raise the daemon's open-file limit, or run it with --hold-ports=false)",
                host_port_str(port.ip, port.port),
                port.proto
            ),
            source: e,
        },
        _ => HostError::Io {
            op: format!(
                "reserving host port {}/{}",
                host_port_str(port.ip, port.port),
                port.proto
            ),
            source: e,
        },
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `port` bound, and for `0.0.0.0` (when `hold`) its `[::]` twin (see
/// the module doc); on failure the port that failed (the twin's, if that
/// one) and why.
fn bind_with_twin(port: HostPort, hold: bool) -> Result<Held, (HostPort, io::Error)> {
    let socket = bind(port).map_err(|e| (port, e))?;
    if !hold || port.ip != IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) {
        return Ok(Held {
            _socket: socket,
            twin: None,
        });
    }
    let twin = HostPort {
        ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        ..port
    };
    match bind(twin) {
        Ok(fd) => Ok(Held {
            _socket: socket,
            twin: Some(fd),
        }),
        // IPv6 disabled on this host: nothing to hold there.
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(Held {
            _socket: socket,
            twin: None,
        }),
        Err(e) => Err((twin, e)),
    }
}

/// A socket of `port`'s protocol bound to its address (see the module
/// doc); an IPv6 one IPv6-only, so `[::]` and `0.0.0.0` are two ports, as
/// Docker binds them.
fn bind(port: HostPort) -> io::Result<OwnedFd> {
    let ty = match port.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    let family = match port.ip {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd =
        unsafe { OwnedFd::from_raw_fd(check(libc::socket(family, ty | libc::SOCK_CLOEXEC, 0))?) };
    if port.proto == Proto::Udp {
        drop_all(&fd)?;
    }
    match port.ip {
        IpAddr::V4(ip) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: bind with a sockaddr_in of the right size.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            })?;
        }
        IpAddr::V6(ip) => {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt with an int of the right size.
            check(unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                    (&raw const on).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            })?;
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: port.port.to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: bind with a sockaddr_in6 of the right size.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            })?;
        }
    }
    Ok(fd)
}

/// Attaches the one-instruction classic BPF program `ret #0`: every
/// datagram is dropped before it is queued.
fn drop_all(fd: &OwnedFd) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The kernel's ephemeral range and reserved ports, in the calling
/// thread's network namespace; Docker's fallback 49153-65535 if unreadable.
pub fn ephemeral_ports() -> (u16, u16, Vec<(u16, u16)>) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi && lo > 0 => Some((lo, hi)),
                _ => None,
            }
        })
        .unwrap_or((49153, 65535));
    let reserved = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| parse_port_list(&s))
        .unwrap_or_default();
    (range.0, range.1, reserved)
}

/// `ip_local_reserved_ports` syntax: `8080,9000-9010`.
fn parse_port_list(s: &str) -> Vec<(u16, u16)> {
    s.trim()
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            match item.split_once('-') {
                Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                None => {
                    let p = item.parse().ok()?;
                    Some((p, p))
                }
            }
        })
        .collect()
}

/// The daemon's soft open-file limit.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Raises the soft open-file limit as far as allowed (root may raise the
/// hard limit to `fs.nr_open`): every published port holds a descriptor.
pub fn raise_fd_limit() -> io::Result<u64> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    let want = libc::rlimit {
        rlim_cur: nr_open.max(lim.rlim_cur),
        rlim_max: nr_open.max(lim.rlim_max),
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return Ok(want.rlim_cur);
    }
    // Not privileged to raise the hard limit: take what it allows.
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) })?;
    Ok(soft.rlim_cur)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};

    use super::*;

    /// Tests that bind wildcard addresses or hundreds of ports run one at
    /// a time: a wildcard reservation of one would take a port another
    /// probed free a moment before.
    static BINDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        BINDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Unprivileged: binds on loopback high ports only.
    #[test]
    fn a_reserved_port_cannot_be_taken_and_a_taken_port_is_refused() {
        let _one = one_at_a_time();
        let mut r = Reservations::default();
        // A port some process holds is refused with Docker's wording.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let err = r
            .reserve(HostPort {
                ip: Ipv4Addr::LOCALHOST.into(),
                port,
                proto: Proto::Tcp,
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("failed to bind host port 127.0.0.1:{port}/tcp: address already in use")
        );
        drop(held);
        // Once reserved, nobody else can bind it, TCP or UDP.
        for proto in [Proto::Tcp, Proto::Udp] {
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            let hp = HostPort {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                port,
                proto,
            };
            r.reserve(hp).unwrap();
            let taken = match proto {
                Proto::Tcp => TcpListener::bind(("127.0.0.1", port)).is_err(),
                Proto::Udp => UdpSocket::bind(("127.0.0.1", port)).is_err(),
            };
            assert!(taken, "{proto} port {port} not held");
            r.release(hp);
            let free = match proto {
                Proto::Tcp => TcpListener::bind(("127.0.0.1", port)).is_ok(),
                Proto::Udp => UdpSocket::bind(("127.0.0.1", port)).is_ok(),
            };
            assert!(free, "{proto} port {port} still held after release");
        }
        assert!(r.is_empty());
    }

    /// An IPv6 reservation holds the IPv6 port only: `[::]` and
    /// `0.0.0.0` are two ports, as Docker binds them.
    #[test]
    fn an_ipv6_reservation_holds_the_ipv6_port_only() {
        let _one = one_at_a_time();
        use std::net::Ipv6Addr;
        let mut r = Reservations::default();
        let probe = TcpListener::bind("[::1]:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let hp = HostPort {
            ip: Ipv6Addr::UNSPECIFIED.into(),
            port,
            proto: Proto::Tcp,
        };
        r.reserve(hp).unwrap();
        assert!(
            TcpListener::bind(("::1", port)).is_err(),
            "[::]:{port} not held"
        );
        let v4 = TcpListener::bind(("127.0.0.1", port));
        assert!(v4.is_ok(), "the IPv4 port {port} was taken too");
        let err = Reservations::default()
            .reserve(HostPort {
                ip: Ipv6Addr::LOCALHOST.into(),
                port,
                proto: Proto::Tcp,
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("failed to bind host port [::1]:{port}/tcp: address already in use")
        );
        drop(v4);
        r.release(hp);
        assert!(TcpListener::bind(("::1", port)).is_ok(), "still held");

        // 0.0.0.0 holds [::] too, as Docker binds both; a [::] some
        // process holds refuses it, naming that side.
        let wildcard = HostPort {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            port,
            proto: Proto::Tcp,
        };
        r.reserve(wildcard).unwrap();
        assert!(
            TcpListener::bind(("::1", port)).is_err(),
            "[::]:{port} not held"
        );
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_err(),
            "0.0.0.0 not held"
        );
        r.release(wildcard);
        // Another holder of [::] alone (IPv6-only, as a reservation binds).
        let mut squatter = Reservations::default();
        squatter.reserve(hp).unwrap();
        let err = r.reserve(wildcard).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("failed to bind host port [::]:{port}/tcp: address already in use")
        );
        drop(squatter);
        assert!(r.is_empty(), "a refused reservation holds nothing");
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "0.0.0.0 let go"
        );
    }

    #[test]
    fn without_holding_a_taken_port_is_still_refused_and_nothing_is_held() {
        let _one = one_at_a_time();
        let mut r = Reservations::new(false);
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let hp = |port| HostPort {
            ip: Ipv4Addr::LOCALHOST.into(),
            port,
            proto: Proto::Tcp,
        };
        assert!(matches!(
            r.reserve(hp(port)),
            Err(HostError::PortInUse { .. })
        ));
        drop(held);
        r.reserve(hp(port)).unwrap();
        assert!(r.is_empty());
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "not held");
    }

    /// `n` distinct loopback TCP ports free a moment ago (the kernel's
    /// choice, one probe open at a time).
    fn free_ports(n: usize) -> Vec<HostPort> {
        let mut seen = HashSet::new();
        let mut ports = Vec::new();
        while ports.len() < n {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            if seen.insert(port) {
                ports.push(HostPort {
                    ip: Ipv4Addr::LOCALHOST.into(),
                    port,
                    proto: Proto::Tcp,
                });
            }
        }
        ports
    }

    /// Enough ports for several binding threads: two held by another
    /// socket, the later one early in its slice. The first in the list is
    /// reported whichever thread meets its port first, and nothing stays
    /// held; without them every port is held.
    #[test]
    fn a_bulk_reservation_is_all_or_nothing_and_reports_the_first_failure() {
        let _one = one_at_a_time();
        let ports = free_ports(3 * MIN_BINDS_PER_THREAD);
        let (early, late) = (
            ports[MIN_BINDS_PER_THREAD + 7],
            ports[2 * MIN_BINDS_PER_THREAD],
        );
        let held: Vec<TcpListener> = [late, early]
            .iter()
            .map(|p| TcpListener::bind(("127.0.0.1", p.port)).unwrap())
            .collect();
        let mut r = Reservations::default();
        match r.reserve_all(&ports) {
            Err(HostError::PortInUse { port, .. }) => assert_eq!(port, early.port),
            other => panic!("{other:?}"),
        }
        assert!(r.is_empty(), "a refused batch holds nothing");
        let still_bound = ports
            .iter()
            .filter(|p| **p != early && **p != late)
            .filter(|p| TcpListener::bind(("127.0.0.1", p.port)).is_err())
            .count();
        assert_eq!(still_bound, 0, "ports of the refused batch left bound");
        drop(held);
        r.reserve_all(&ports).unwrap();
        assert_eq!(r.held.len(), ports.len());
        assert!(TcpListener::bind(("127.0.0.1", early.port)).is_err());
        // Already held ports are kept, not bound again.
        r.reserve_all(&ports[..10]).unwrap();
        assert_eq!(r.held.len(), ports.len());
    }

    #[test]
    fn reserved_port_lists_parse() {
        assert_eq!(
            parse_port_list("8080,9000-9010\n"),
            [(8080, 8080), (9000, 9010)]
        );
        assert!(parse_port_list("\n").is_empty());
    }
}
