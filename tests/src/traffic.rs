//! Real traffic endpoints for the netns tests: echo servers that report the
//! peer they saw, clients made inside a namespace, and raw frames.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use crate::netns::Netns;

/// How often the servers' accept/recv loops look at their stop flag.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for any single network operation in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A server loop on its own thread, stopped and joined on drop. `step` is
/// called until the guard drops; it must return within about [`POLL`].
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn spawn(mut step: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                step();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server in a namespace: for each line received on a connection it
/// answers `<peer ip>:<peer port> <line>`.
pub fn tcp_echo(ns: &Netns, port: u16) -> Server {
    tcp_echo_on(ns, SocketAddr::from(([0, 0, 0, 0], port)))
}

/// [`tcp_echo`] on `addr` (`[::]:PORT` for IPv6 and IPv4-mapped IPv4).
pub fn tcp_echo_on(ns: &Netns, addr: SocketAddr) -> Server {
    let listener = ns.enter(move || TcpListener::bind(addr).expect("bind TCP"));
    listener.set_nonblocking(true).expect("nonblocking");
    Server::spawn(move || match listener.accept() {
        Ok((conn, peer)) => {
            thread::spawn(move || echo_lines(conn, peer));
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener),
        Err(e) => panic!("accept: {e}"),
    })
}

/// Waits until `socket` is readable or [`POLL`] has passed: a server loop
/// wakes at once for new work and still sees its stop flag in time.
fn wait_readable(socket: &impl AsRawFd) {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&raw mut pfd, 1, POLL.as_millis() as i32) };
}

fn echo_lines(conn: TcpStream, peer: SocketAddr) {
    conn.set_nonblocking(false).ok();
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if writer
            .write_all(format!("{peer} {line}").as_bytes())
            .is_err()
        {
            return;
        }
        line.clear();
    }
}

/// A TCP server in a namespace that accepts and at once closes every
/// connection (for connection-rate measurements). Its accept queue is deep
/// (4096, not std's 128): a burst that overflowed it would drop a SYN and
/// stall the client for a whole retransmission timeout.
pub fn tcp_accept_close(ns: &Netns, port: u16) -> Server {
    let listener = ns.enter(move || TcpListener::bind(("0.0.0.0", port)).expect("bind TCP"));
    // SAFETY: listen(2) again on a listening socket only resizes its queue.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
    accept_and_close(listener)
}

/// Accepts and closes every connection `listener` gets.
fn accept_and_close(listener: TcpListener) -> Server {
    listener.set_nonblocking(true).expect("nonblocking");
    Server::spawn(move || match listener.accept() {
        Ok((conn, _)) => drop(conn),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener),
        Err(e) => panic!("accept: {e}"),
    })
}

/// The message size of [`tcp_ping_pong_v6only`].
pub const PING_PONG_BYTES: usize = 64;

/// A TCP ping-pong server in `ns` on `[::]:port`, IPv6 only (so it can
/// share the port with an IPv4 server): each connection's messages of
/// [`PING_PONG_BYTES`] are echoed back, on a thread per connection.
pub fn tcp_ping_pong_v6only(ns: &Netns, port: u16) -> Server {
    let listener = ns.enter(move || v6only_listener(port));
    listener.set_nonblocking(true).expect("nonblocking");
    Server::spawn(move || match listener.accept() {
        Ok((mut conn, _)) => {
            conn.set_nonblocking(false).expect("blocking");
            let _ = conn.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = [0u8; PING_PONG_BYTES];
                while conn.read_exact(&mut buf).is_ok() && conn.write_all(&buf).is_ok() {}
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener),
        Err(e) => panic!("accept: {e}"),
    })
}

/// [`tcp_accept_close`] on `[::]:port`, IPv6 only (beside an IPv4 one on
/// the same port).
pub fn tcp_accept_close_v6only(ns: &Netns, port: u16) -> Server {
    accept_and_close(ns.enter(move || v6only_listener(port)))
}

/// A TCP listener on `[::]:port` with `IPV6_V6ONLY` (which std cannot set
/// before binding), a backlog of 4096, in the calling thread's namespace.
fn v6only_listener(port: u16) -> TcpListener {
    // SAFETY: socket calls on a descriptor owned at once; the option
    // values and the address are initialised locals of the right sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let listener = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for (level, opt) in [
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        ] {
            let rc = libc::setsockopt(
                fd,
                level,
                opt,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        let rc = libc::bind(
            fd,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        assert_eq!(
            rc,
            0,
            "bind [::]:{port}: {}",
            std::io::Error::last_os_error()
        );
        let rc = libc::listen(fd, 4096);
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        listener
    }
}

/// A UDP server in a namespace answering each datagram with
/// `<peer ip>:<peer port> <payload>`.
pub fn udp_echo(ns: &Netns, port: u16) -> Server {
    udp_echo_on(ns, SocketAddr::from(([0, 0, 0, 0], port)))
}

/// [`udp_echo`] on `addr` (`[::]:PORT` for IPv6).
pub fn udp_echo_on(ns: &Netns, addr: SocketAddr) -> Server {
    let socket = ns.enter(move || UdpSocket::bind(addr).expect("bind UDP"));
    socket.set_read_timeout(Some(POLL)).expect("timeout");
    let mut buf = vec![0u8; 65536];
    Server::spawn(move || {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let mut reply = format!("{peer} ").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, peer);
        }
    })
}

/// A TCP server in a namespace for bulk transfers: a connection that
/// starts with the byte `d` gets `bytes` bytes back (a download); one that
/// starts with `u` is read to its end and answered with the byte count it
/// carried (an upload).
pub fn tcp_bulk(ns: &Netns, port: u16, bytes: usize) -> Server {
    tcp_bulk_on(ns, SocketAddr::from(([0, 0, 0, 0], port)), bytes)
}

/// [`tcp_bulk`] on `addr` (`[::]:PORT` for IPv6).
pub fn tcp_bulk_on(ns: &Netns, addr: SocketAddr, bytes: usize) -> Server {
    let listener = ns.enter(move || TcpListener::bind(addr).expect("bind TCP"));
    listener.set_nonblocking(true).expect("nonblocking");
    Server::spawn(move || match listener.accept() {
        Ok((conn, _)) => {
            thread::spawn(move || serve_bulk(conn, bytes));
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener),
        Err(e) => panic!("accept: {e}"),
    })
}

fn serve_bulk(mut conn: TcpStream, bytes: usize) {
    use std::io::Read as _;
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(BULK_TIMEOUT)).ok();
    let mut kind = [0u8; 1];
    if conn.read_exact(&mut kind).is_err() {
        return;
    }
    if kind[0] == b'd' {
        let chunk = vec![0x5a; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            if conn.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    } else {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let _ = conn.write_all(total.to_string().as_bytes());
    }
}

/// How long one bulk transfer may take before a test calls it stalled.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads from a [`tcp_bulk`] server from inside `ns`; returns the
/// bytes received.
pub fn bulk_download(ns: &Netns, to: &str) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut conn = tcp_connect(ns, to)?;
    conn.set_read_timeout(Some(BULK_TIMEOUT))?;
    conn.write_all(b"d")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Uploads `bytes` bytes to a [`tcp_bulk`] server from inside `ns`;
/// returns the count the server says it received.
pub fn bulk_upload(ns: &Netns, to: &str, bytes: usize) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut conn = tcp_connect(ns, to)?;
    conn.set_read_timeout(Some(BULK_TIMEOUT))?;
    conn.set_write_timeout(Some(BULK_TIMEOUT))?;
    conn.write_all(b"u")?;
    let chunk = vec![0xa5; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        conn.write_all(&chunk[..n])?;
        left -= n;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    answer
        .trim()
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad count {answer:?}: {e}")))
}

/// A TCP connection made from inside `ns`.
pub fn tcp_connect(ns: &Netns, to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().expect("socket address");
    let stream = ns.enter(move || TcpStream::connect_timeout(&to, IO_TIMEOUT))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends one line on `stream` and returns the echo server's answer line.
pub fn tcp_roundtrip(stream: &mut TcpStream, line: &str) -> std::io::Result<String> {
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut answer = String::new();
    let n = reader.read_line(&mut answer)?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(answer.trim_end().to_owned())
}

/// A UDP socket bound inside `ns`, with the test read timeout.
pub fn udp_socket(ns: &Netns) -> UdpSocket {
    let s = ns.enter(|| UdpSocket::bind("0.0.0.0:0").expect("bind UDP"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Sends raw Ethernet frames out of `iface` in `ns` (AF_PACKET), so the
/// checksums on the wire are exactly the ones built, with no offload.
pub struct RawSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSender {
    pub fn new(ns: &Netns, iface: &str) -> Self {
        let name = std::ffi::CString::new(iface).expect("iface name");
        let (fd, ifindex) = ns.enter(move || {
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from((libc::ETH_P_ALL as u16).to_be()),
                )
            };
            assert!(
                raw >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: `raw` is a fresh descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: valid C string; resolved in this thread's namespace.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "no interface {name:?}");
            (fd, ifindex as i32)
        });
        Self { fd, ifindex }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A container's published ports carry real traffic from `client`: a TCP
/// echo on the container's port 80 answers through `host:tcp`, and a UDP
/// echo on its port 53 through `host:udp`, the answer coming from the
/// published address.
pub fn published_roundtrips(client: &Netns, container: &Netns, host: &str, tcp: u16, udp: u16) {
    let _tcp = tcp_echo(container, 80);
    let _udp = udp_echo(container, 53);
    let mut stream = tcp_connect(client, &format!("{host}:{tcp}"))
        .unwrap_or_else(|e| panic!("TCP to {host}:{tcp}: {e}"));
    let answer = tcp_roundtrip(&mut stream, "published")
        .unwrap_or_else(|e| panic!("TCP answer from {host}:{tcp}: {e}"));
    assert!(answer.ends_with(" published"), "{answer}");
    drop(stream);
    let socket = udp_socket(client);
    socket
        .send_to(b"q", format!("{host}:{udp}"))
        .expect("sending UDP");
    let mut buf = [0u8; 128];
    let (_, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("UDP answer from {host}:{udp}: {e}"));
    assert_eq!(from.to_string(), format!("{host}:{udp}"));
}
