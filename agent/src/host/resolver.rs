//! The embedded resolver's sockets in a container's namespace, made on a
//! thread inside it (its netlink worker, see `Host::resolver_sockets`).

use std::io;

use super::{HostError, ResolverSockets, netlink::io_err};

/// The resolver's sockets, made on this thread, which is inside the
/// container's namespace (see [`super::Host::resolver_sockets`]).
pub fn sockets(program: Option<std::os::fd::OwnedFd>) -> Result<ResolverSockets, HostError> {
    use std::os::fd::AsFd as _;
    let ip = super::RESOLVER_IP;
    let Some(program) = program else {
        let at = std::net::SocketAddr::from((ip, 53));
        let what = format!("binding {at} in the container (something else has port 53 there?)");
        let udp = std::net::UdpSocket::bind(at).map_err(io_err(what.clone()))?;
        let tcp = std::net::TcpListener::bind(at).map_err(io_err(what))?;
        let cookie = crate::datapath::cookie::netns_cookie_of(udp.as_fd()).unwrap_or(0);
        return Ok(ResolverSockets {
            udp,
            tcp,
            port: 53,
            cookie,
            link: None,
            netns: netns()?,
        });
    };
    // One port for both: UDP picks, TCP takes the same (tried a few times,
    // should a TCP socket of the container hold that port).
    let mut last = None;
    for _ in 0..8 {
        let udp = std::net::UdpSocket::bind((ip, 0))
            .map_err(io_err(format!("binding {ip}:0 (UDP) in the container")))?;
        let port = udp
            .local_addr()
            .map_err(io_err("reading the resolver's port"))?
            .port();
        match std::net::TcpListener::bind((ip, port)) {
            Ok(tcp) => {
                let cookie = crate::datapath::cookie::netns_cookie_of(udp.as_fd())
                    .map_err(io_err("reading the container namespace's cookie"))?;
                let lo = nix_ifindex("lo")?;
                let link = super::tcx::attach_egress(program.as_fd(), lo).map_err(io_err(
                    "attaching the resolver's loopback program (TCX egress of lo)",
                ))?;
                return Ok(ResolverSockets {
                    udp,
                    tcp,
                    port,
                    cookie,
                    link: Some(link),
                    netns: netns()?,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(HostError::Io {
        op: format!("binding {ip} TCP on the resolver's UDP port in the container"),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}

/// This thread's namespace (the container's).
fn netns() -> Result<std::os::fd::OwnedFd, HostError> {
    super::nssock::own_netns().map_err(io_err("opening the container's namespace"))
}

/// The index of interface `name` in this thread's namespace.
fn nix_ifindex(name: &str) -> Result<u32, HostError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| HostError::Other(format!("{name:?}: not an interface name")))?;
    // SAFETY: a NUL-terminated name we own.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(HostError::Io {
            op: format!("finding {name} in the container"),
            source: io::Error::last_os_error(),
        }),
        index => Ok(index),
    }
}
