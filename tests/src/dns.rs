//! DNS from inside a namespace: queries to the embedded resolver (or any
//! server) over UDP and TCP, and a fake upstream server, built on
//! hickory-proto as the resolver is.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};

use crate::netns::Netns;

/// The embedded resolver, as containers reach it.
pub const RESOLVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 11),
    53,
));

/// A standard query for `name` of type `kind`, recursion desired.
pub fn query(name: &str, kind: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    msg.add_query(Query::query(
        Name::from_ascii(&fqdn).expect("a DNS name"),
        kind,
    ));
    msg
}

/// How long [`udp_raw`] waits for an answer.
pub const UDP_WAIT: Duration = Duration::from_secs(2);

/// Sends `bytes` to `server` over UDP from namespace `ns`; the answer
/// (`None` after [`UDP_WAIT`] or on an ICMP error).
pub fn udp_raw(ns: &Netns, server: SocketAddr, bytes: Vec<u8>) -> Option<Vec<u8>> {
    udp_raw_within(ns, server, bytes, UDP_WAIT)
}

/// [`udp_raw`], waiting up to `wait`.
pub fn udp_raw_within(
    ns: &Netns,
    server: SocketAddr,
    bytes: Vec<u8>,
    wait: Duration,
) -> Option<Vec<u8>> {
    ns.enter(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        socket.connect(server).expect("connect");
        socket.set_read_timeout(Some(wait)).expect("timeout");
        socket.send(&bytes).ok()?;
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    })
}

/// Sends `msg` over TCP (length-prefixed) from `ns`; the answer.
pub fn tcp_raw(ns: &Netns, server: SocketAddr, bytes: Vec<u8>) -> Option<Vec<u8>> {
    ns.enter(move || {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let len = u16::try_from(bytes.len()).expect("a DNS message fits 64 KiB");
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).ok()?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).ok()?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).ok()?;
        Some(answer)
    })
}

/// Asks the embedded resolver of `ns` for `name` over UDP; the parsed
/// answer, checked to be a response to this query.
pub fn ask(ns: &Netns, name: &str, kind: RecordType) -> Option<Message> {
    ask_via(ns, RESOLVER, name, kind, false)
}

/// [`ask`] over TCP.
pub fn ask_tcp(ns: &Netns, name: &str, kind: RecordType) -> Option<Message> {
    ask_via(ns, RESOLVER, name, kind, true)
}

pub fn ask_via(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    tcp: bool,
) -> Option<Message> {
    let q = query(name, kind);
    let bytes = q.to_vec().expect("encodes");
    let answer = if tcp {
        tcp_raw(ns, server, bytes)?
    } else {
        udp_raw(ns, server, bytes)?
    };
    Some(checked_answer(&q, &answer))
}

/// [`ask`], waiting up to `wait` (an answer that comes only after the
/// resolver gave up on its upstreams: 4 s each).
pub fn ask_within(ns: &Netns, name: &str, kind: RecordType, wait: Duration) -> Option<Message> {
    let q = query(name, kind);
    let answer = udp_raw_within(ns, RESOLVER, q.to_vec().expect("encodes"), wait)?;
    Some(checked_answer(&q, &answer))
}

/// `answer` parsed and checked to answer `q`.
fn checked_answer(q: &Message, answer: &[u8]) -> Message {
    let msg = Message::from_vec(answer).expect("the resolver's answer parses");
    assert_eq!(
        msg.metadata.id, q.metadata.id,
        "the answer's ID is the query's"
    );
    assert_eq!(msg.metadata.message_type, MessageType::Response);
    assert_eq!(msg.queries, q.queries, "the answer repeats the question");
    msg
}

/// The IPv4 addresses of an answer, in its order.
pub fn v4s(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The IPv6 addresses of an answer.
pub fn v6s(msg: &Message) -> Vec<std::net::Ipv6Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// An upstream server for the resolver's forwarding tests, in a test's
/// namespace, UDP and TCP on one address:
/// - `NAME.test.` A -> 192.0.2.1 (any NAME);
/// - `big.test.` A -> 100 addresses: over UDP a truncated answer (TC,
///   no records), over TCP all of them;
/// - anything else: NXDOMAIN;
/// - with `refuse`, every query REFUSED (a server to fail over from).
///
/// It counts the queries it got and records who sent them; it stops when
/// dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicU64>,
    pub tcp_queries: Arc<AtomicU64>,
    /// The source address of every query, in arrival order.
    pub peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start(ns: &Netns, addr: SocketAddr, refuse: bool) -> Self {
        let (udp, tcp) = ns.enter(move || {
            let udp = UdpSocket::bind(addr).expect("binding the fake upstream (UDP)");
            let tcp = TcpListener::bind(addr).expect("binding the fake upstream (TCP)");
            (udp, tcp)
        });
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (udp_queries, tcp_queries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        {
            let (stop, count) = (Arc::clone(&stop), Arc::clone(&udp_queries));
            let seen = Arc::clone(&peers);
            threads.push(thread::spawn(move || {
                let mut buf = vec![0u8; 65535];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    seen.lock().expect("peers").push(peer.ip());
                    if let Some(answer) = fake_answer(&buf[..n], false, refuse) {
                        let _ = udp.send_to(&answer, peer);
                    }
                }
            }));
        }
        {
            let (stop, count) = (Arc::clone(&stop), Arc::clone(&tcp_queries));
            let seen = Arc::clone(&peers);
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, peer)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    stream.set_nonblocking(false).expect("blocking");
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut q).is_err() {
                        continue;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    seen.lock().expect("peers").push(peer.ip());
                    if let Some(answer) = fake_answer(&q, true, refuse) {
                        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        let _ = stream.write_all(&framed);
                    }
                }
            }));
        }
        Self {
            addr,
            udp_queries,
            tcp_queries,
            peers,
            stop,
            threads,
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn fake_answer(query: &[u8], tcp: bool, refuse: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut msg = Message::response(q.metadata.id, q.metadata.op_code);
    msg.metadata.recursion_desired = q.metadata.recursion_desired;
    msg.metadata.recursion_available = true;
    msg.add_query(question.clone());
    let name = question.name().to_ascii();
    if refuse {
        msg.metadata.response_code = ResponseCode::Refused;
    } else if name == "big.test." && question.query_type() == RecordType::A {
        if tcp {
            for i in 0..100u8 {
                msg.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(198, 51, 100, i))),
                ));
            }
        } else {
            msg.metadata.truncation = true;
        }
    } else if name.ends_with(".test.") && question.query_type() == RecordType::A {
        msg.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
    } else {
        msg.metadata.response_code = ResponseCode::NXDomain;
    }
    msg.to_vec().ok()
}
