//! Frames built and checked from scratch, independent of the datapath's
//! own checksum code, so a datapath bug cannot hide behind a shared helper.

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub use datapath_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Destination unreachable codes.
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// RFC 1071 Internet checksum of `data` added to `initial` (not complemented).
pub fn sum16(data: &[u8], initial: u32) -> u32 {
    let mut sum = initial;
    let (words, rest) = data.as_chunks::<2>();
    for w in words {
        sum += u32::from(u16::from_be_bytes(*w));
    }
    if let [last] = rest {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header sum of TCP/UDP over IPv4.
pub fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&len.to_be_bytes());
    sum16(&p, 0)
}

/// How the L4 checksum field of a built frame is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Csum {
    /// The correct checksum.
    Valid,
    /// The correct checksum with its low bit flipped (negative control).
    Corrupt,
    /// UDP "no checksum" (0).
    Zero,
    /// What a CHECKSUM_PARTIAL sender leaves: the pseudo-header seed.
    PartialSeed,
}

/// A frame to build.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// The IPv4 flags + fragment offset field.
    pub frag_off: u16,
    /// The IPv4 identification field.
    pub ip_id: u16,
    pub ttl: u8,
    pub csum: L4Csum,
    /// TCP flags, sequence and acknowledgement numbers.
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
}

impl FrameSpec {
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Self {
        Self::new(IPPROTO_UDP, src, sport, dst, dport, payload)
    }

    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Self {
        Self::new(IPPROTO_TCP, src, sport, dst, dport, payload)
    }

    /// An ICMP echo request (`request`) or reply with identifier `id`. It
    /// is described like the datapath sees it: a request has the
    /// identifier as `sport`, a reply as `dport`.
    pub fn icmp_echo(src: &str, dst: &str, id: u16, request: bool, payload: &[u8]) -> Self {
        let (sport, dport) = if request { (id, 0) } else { (0, id) };
        Self::new(IPPROTO_ICMP, src, sport, dst, dport, payload)
    }

    fn new(proto: u8, src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Self {
        Self {
            eth_src: [0x02, 0, 0, 0, 0, 0x01],
            eth_dst: [0x02, 0, 0, 0, 0, 0x02],
            src: src.parse().expect("src IPv4"),
            dst: dst.parse().expect("dst IPv4"),
            proto,
            sport,
            dport,
            payload: payload.to_vec(),
            ip_options: Vec::new(),
            frag_off: 0x4000, // DF
            ip_id: 0x1234,
            ttl: 64,
            csum: L4Csum::Valid,
            tcp_flags: TCP_SYN,
            seq: 1,
            ack: 0,
        }
    }

    /// The same packet with other TCP flags and numbers.
    pub fn tcp_with(mut self, flags: u8, seq: u32, ack: u32) -> Self {
        self.tcp_flags = flags;
        self.seq = seq;
        self.ack = ack;
        self
    }

    /// The L4 segment (header + payload) with its checksum field filled.
    fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        let csum_off = match self.proto {
            IPPROTO_TCP => {
                l4.extend_from_slice(&self.seq.to_be_bytes());
                l4.extend_from_slice(&self.ack.to_be_bytes());
                l4.extend_from_slice(&[0x50, self.tcp_flags]); // doff 5
                l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, csum, urg
                16
            }
            IPPROTO_UDP => {
                let len = (8 + self.payload.len()) as u16;
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                6
            }
            IPPROTO_ICMP => {
                // Type, code, checksum, identifier, sequence.
                let (ty, id) = if self.sport != 0 {
                    (ICMP_ECHO_REQUEST, self.sport)
                } else {
                    (ICMP_ECHO_REPLY, self.dport)
                };
                l4.clear();
                l4.extend_from_slice(&[ty, 0, 0, 0]);
                l4.extend_from_slice(&id.to_be_bytes());
                l4.extend_from_slice(&7u16.to_be_bytes());
                2
            }
            _ => panic!("FrameSpec builds TCP, UDP or ICMP echo"),
        };
        l4.extend_from_slice(&self.payload);
        let len = l4.len() as u16;
        // ICMP has no pseudo-header.
        let pseudo = if self.proto == IPPROTO_ICMP {
            0
        } else {
            pseudo_sum(self.src, self.dst, self.proto, len)
        };
        let full = !fold(sum16(&l4, pseudo));
        let value = match self.csum {
            L4Csum::Valid if self.proto == IPPROTO_UDP && full == 0 => 0xffff,
            L4Csum::Valid => full,
            L4Csum::Corrupt => full ^ 1,
            L4Csum::Zero => 0,
            L4Csum::PartialSeed => fold(pseudo),
        };
        l4[csum_off..csum_off + 2].copy_from_slice(&value.to_be_bytes());
        l4
    }

    pub fn build(&self) -> Vec<u8> {
        assert_eq!(self.ip_options.len() % 4, 0, "IPv4 options pad to 4 bytes");
        let l4 = self.l4();
        let ihl = 20 + self.ip_options.len();
        let mut f = Vec::new();
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&self.ip_id.to_be_bytes());
        f.extend_from_slice(&self.frag_off.to_be_bytes());
        f.push(self.ttl);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&self.ip_options);
        let ip_csum = !fold(sum16(&f[14..14 + ihl], 0));
        f[24..26].copy_from_slice(&ip_csum.to_be_bytes());
        f.extend_from_slice(&l4);
        f
    }
}

/// A frame's addressing, after its checksums were verified from scratch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// The L4 checksum field as found (0 = UDP without checksum).
    pub l4_csum: u16,
}

/// Parses an Ethernet/IPv4/TCP-or-UDP frame and verifies the IPv4 header
/// checksum and the L4 checksum over pseudo-header, header and payload.
pub fn verify(frame: &[u8]) -> Result<Checked, String> {
    if frame.len() < 34 || frame[12..14] != ETH_P_IP.to_be_bytes() {
        return Err("not an IPv4 frame".into());
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip.len() < tot || tot < ihl {
        return Err(format!("IPv4 total length {tot} vs {} bytes", ip.len()));
    }
    if fold(sum16(&ip[..ihl], 0)) != 0xffff {
        return Err("bad IPv4 header checksum".into());
    }
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[ihl..tot];
    let csum_off = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMP => 2,
        p => return Err(format!("protocol {p} is neither TCP, UDP nor ICMP")),
    };
    let l4_csum = u16::from_be_bytes([l4[csum_off], l4[csum_off + 1]]);
    let skip = proto == IPPROTO_UDP && l4_csum == 0;
    let pseudo = if proto == IPPROTO_ICMP {
        0
    } else {
        pseudo_sum(src, dst, proto, l4.len() as u16)
    };
    if !skip && fold(sum16(l4, pseudo)) != 0xffff {
        return Err(format!("bad {} checksum {l4_csum:#06x}", proto_name(proto)));
    }
    let (sport, dport) = if proto == IPPROTO_ICMP {
        let id = u16::from_be_bytes([l4[4], l4[5]]);
        match l4[0] {
            ICMP_ECHO_REQUEST => (id, 0),
            ICMP_ECHO_REPLY => (0, id),
            t => return Err(format!("ICMP type {t} is not an echo")),
        }
    } else {
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    };
    Ok(Checked {
        src,
        dst,
        proto,
        sport,
        dport,
        l4_csum,
    })
}

fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "TCP",
        IPPROTO_ICMP => "ICMP",
        _ => "UDP",
    }
}

/// Offsets of the bytes a DNAT or reverse NAT may change: IPv4 checksum,
/// one address, one port and the L4 checksum. Everything else must come
/// out byte-identical.
pub fn nat_mutable_offsets(frame: &[u8], rewrites_src: bool) -> Vec<usize> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let csum = l4
        + match frame[23] {
            IPPROTO_TCP => 16,
            IPPROTO_ICMP => 2,
            _ => 6,
        };
    let (addr, port) = match (rewrites_src, frame[23] == IPPROTO_ICMP) {
        // The echo identifier stands for the port either way.
        (true, true) => (26, l4 + 4),
        (false, true) => (30, l4 + 4),
        (true, false) => (26, l4),
        (false, false) => (30, l4 + 2),
    };
    let mut offs = vec![24, 25, csum, csum + 1, port, port + 1];
    offs.extend(addr..addr + 4);
    offs
}

/// Asserts `after` equals `before` except at NAT-mutable offsets.
pub fn assert_only_nat_fields_changed(before: &[u8], after: &[u8], rewrites_src: bool) {
    assert_eq!(before.len(), after.len(), "frame length changed");
    let mutable = nat_mutable_offsets(before, rewrites_src);
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if !mutable.contains(&i) {
            assert_eq!(b, a, "byte {i} changed ({b:#04x} -> {a:#04x})");
        }
    }
}

/// A frame that is not IPv4 at all.
pub fn non_ip_frame(ethertype: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = i as u8;
    }
    f
}

/// An IPv4 header checksum computed from scratch (the field zeroed).
pub fn ip_header_csum(header: &[u8]) -> u16 {
    let mut h = header.to_vec();
    h[10] = 0;
    h[11] = 0;
    !fold(sum16(&h, 0))
}

/// An ICMP error frame from `src` to `dst` quoting the first `quote` bytes
/// of `quoted` (an Ethernet frame; its IPv4 packet is what is quoted).
/// `rest` is the second word of the ICMP header (the MTU for
/// "fragmentation needed", in its low 16 bits).
pub fn icmp_error(
    src: &str,
    dst: &str,
    ty: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
    quote: usize,
) -> Vec<u8> {
    let inner = &quoted[14..];
    let inner = &inner[..quote.min(inner.len())];
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&rest.to_be_bytes());
    icmp.extend_from_slice(inner);
    let csum = !fold(sum16(&icmp, 0));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let src: Ipv4Addr = src.parse().expect("src");
    let dst: Ipv4Addr = dst.parse().expect("dst");
    f.extend_from_slice(&[0x45, 0xc0]);
    f.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, IPPROTO_ICMP, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let c = ip_header_csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// An ICMP error as found, every checksum verified from scratch: the
/// outer IPv4 header, the ICMP message, the quoted IPv4 header, and the
/// quoted L4 checksum when the whole quoted datagram is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedError {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ty: u8,
    pub code: u8,
    pub inner_src: Ipv4Addr,
    pub inner_dst: Ipv4Addr,
    pub inner_proto: u8,
    pub inner_sport: u16,
    pub inner_dport: u16,
    /// Whether the quoted L4 checksum could be (and was) verified.
    pub inner_l4_verified: bool,
}

pub fn verify_icmp_error(frame: &[u8]) -> Result<CheckedError, String> {
    if frame.len() < 14 + 20 + 8 + 20 + 8 || frame[12..14] != ETH_P_IP.to_be_bytes() {
        return Err("not an IPv4 frame with an ICMP error".into());
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if fold(sum16(&ip[..ihl], 0)) != 0xffff {
        return Err("bad outer IPv4 header checksum".into());
    }
    if ip[9] != IPPROTO_ICMP {
        return Err("not ICMP".into());
    }
    let icmp = &ip[ihl..tot];
    if fold(sum16(icmp, 0)) != 0xffff {
        return Err("bad ICMP checksum".into());
    }
    let inner = &icmp[8..];
    let iihl = usize::from(inner[0] & 0x0f) * 4;
    if fold(sum16(&inner[..iihl], 0)) != 0xffff {
        return Err("bad quoted IPv4 header checksum".into());
    }
    let itot = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
    let iproto = inner[9];
    let isrc = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let idst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    let l4 = &inner[iihl..];
    let (sport, dport) = if iproto == IPPROTO_ICMP {
        let id = u16::from_be_bytes([l4[4], l4[5]]);
        if l4[0] == ICMP_ECHO_REQUEST {
            (id, 0)
        } else {
            (0, id)
        }
    } else {
        (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )
    };
    let whole = inner.len() >= itot;
    let mut inner_l4_verified = false;
    if whole {
        let l4 = &inner[iihl..itot];
        let pseudo = if iproto == IPPROTO_ICMP {
            0
        } else {
            pseudo_sum(isrc, idst, iproto, l4.len() as u16)
        };
        let udp_none = iproto == IPPROTO_UDP && l4[6] == 0 && l4[7] == 0;
        if !udp_none && fold(sum16(l4, pseudo)) != 0xffff {
            return Err("bad quoted L4 checksum".into());
        }
        inner_l4_verified = !udp_none;
    }
    Ok(CheckedError {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ty: icmp[0],
        code: icmp[1],
        inner_src: isrc,
        inner_dst: idst,
        inner_proto: iproto,
        inner_sport: sport,
        inner_dport: dport,
        inner_l4_verified,
    })
}

/// Splits an IPv4 frame into fragments carrying at most `max_payload`
/// bytes each (rounded down to a multiple of 8), as a sender would.
pub fn fragment(frame: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let payload = &frame[14 + ihl..];
    let step = max_payload / 8 * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + step).min(payload.len());
        let more = end < payload.len();
        let mut f = frame[..14 + ihl].to_vec();
        f.extend_from_slice(&payload[off..end]);
        let tot = (ihl + end - off) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        let flags = if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&(flags | (off / 8) as u16).to_be_bytes());
        let c = ip_header_csum(&f[14..14 + ihl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// Reassembles fragments (in any order) into one frame, checking that
/// every fragment's header checksum is valid and that they agree on the
/// addresses, protocol and ID.
pub fn reassemble(fragments: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let first = fragments
        .iter()
        .find(|f| u16::from_be_bytes([f[20], f[21]]) & 0x1fff == 0)
        .ok_or("no first fragment")?;
    let ihl = usize::from(first[14] & 0x0f) * 4;
    let mut payload: Vec<(usize, Vec<u8>)> = Vec::new();
    for f in fragments {
        if fold(sum16(&f[14..14 + ihl], 0)) != 0xffff {
            return Err("bad fragment header checksum".into());
        }
        if f[26..34] != first[26..34] || f[18..20] != first[18..20] || f[23] != first[23] {
            return Err("fragments disagree on addresses, ID or protocol".into());
        }
        let off = usize::from(u16::from_be_bytes([f[20], f[21]]) & 0x1fff) * 8;
        let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
        payload.push((off, f[14 + ihl..14 + tot].to_vec()));
    }
    payload.sort();
    let mut whole = first[..14 + ihl].to_vec();
    for (off, bytes) in payload {
        if off != whole.len() - 14 - ihl {
            return Err(format!("hole or overlap at offset {off}"));
        }
        whole.extend_from_slice(&bytes);
    }
    let tot = (whole.len() - 14) as u16;
    whole[16..18].copy_from_slice(&tot.to_be_bytes());
    whole[20..22].copy_from_slice(&0u16.to_be_bytes());
    let c = ip_header_csum(&whole[14..14 + ihl]);
    whole[24..26].copy_from_slice(&c.to_be_bytes());
    Ok(whole)
}

/// An ARP packet (IPv4 over Ethernet) from `sha`/`spa`, asking for `tpa`.
pub fn arp_request(sha: [u8; 6], spa: &str, tpa: &str) -> Vec<u8> {
    let spa: Ipv4Addr = spa.parse().expect("spa");
    let tpa: Ipv4Addr = tpa.parse().expect("tpa");
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A raw IPv4 frame of another protocol (e.g. GRE, 47) with `payload`.
pub fn ipv4_raw(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    let src: Ipv4Addr = src.parse().expect("src");
    let dst: Ipv4Addr = dst.parse().expect("dst");
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let c = ip_header_csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet/IPv6 frame from `src_mac`: `src` to `dst`, the extension
/// headers `ext` (each `(next header value it is, its bytes)`: the first
/// byte, its own next header, is filled in), then `proto` and `payload`.
pub fn ipv6_frame(
    src_mac: [u8; 6],
    src: &str,
    dst: &str,
    ext: &[(u8, Vec<u8>)],
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().expect("src");
    let dst: std::net::Ipv6Addr = dst.parse().expect("dst");
    let mut body = Vec::new();
    for (i, (_, bytes)) in ext.iter().enumerate() {
        let mut h = bytes.clone();
        h[0] = ext.get(i + 1).map_or(proto, |(kind, _)| *kind);
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(payload);
    let first = ext.first().map_or(proto, |(kind, _)| *kind);
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.extend_from_slice(&[first, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&body);
    f
}

/// `frame` (Ethernet/IPv6 without extension headers, TCP, UDP or ICMPv6)
/// with its L4 checksum computed over the IPv6 pseudo-header.
pub fn with_checksum6(mut frame: Vec<u8>) -> Vec<u8> {
    let proto = frame[20];
    let off = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMPV6 => 2,
        p => panic!("protocol {p}"),
    };
    frame[54 + off..54 + off + 2].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&frame[54..], pseudo_sum6(&frame)));
    let c = if c == 0 && proto == IPPROTO_UDP {
        0xffff
    } else {
        c
    };
    frame[54 + off..54 + off + 2].copy_from_slice(&c.to_be_bytes());
    frame
}

/// The IPv6 pseudo-header sum of an Ethernet/IPv6 frame without extension
/// headers.
fn pseudo_sum6(frame: &[u8]) -> u32 {
    let len = (frame.len() - 54) as u32;
    let mut pseudo = frame[22..54].to_vec();
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, frame[20]]);
    sum16(&pseudo, 0)
}

/// Whether the TCP/UDP checksum of an Ethernet/IPv6 frame (no extension
/// headers) is right.
pub fn checksum6_ok(frame: &[u8]) -> bool {
    fold(sum16(&frame[54..], pseudo_sum6(frame))) == 0xffff
}

/// A TCP (`proto` 6, a SYN) or UDP packet over IPv6 with valid checksums.
pub fn l4_frame6(
    src_mac: [u8; 6],
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    if proto == IPPROTO_TCP {
        l4.extend_from_slice(&[
            0, 0, 0, 1, 0, 0, 0, 0, 0x50, TCP_SYN, 0xff, 0xff, 0, 0, 0, 0,
        ]);
    } else {
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    with_checksum6(ipv6_frame(src_mac, src, dst, &[], proto, &l4))
}

/// An ICMPv6 echo request (128) or reply (129) with identifier `id`, with
/// a valid checksum.
pub fn echo6_frame(src_mac: [u8; 6], src: &str, dst: &str, request: bool, id: u16) -> Vec<u8> {
    let mut m = vec![if request { 128 } else { 129 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(b"echo");
    with_checksum6(ipv6_frame(src_mac, src, dst, &[], IPPROTO_ICMPV6, &m))
}

/// An ICMPv6 error (`kind` 1-4, `code`) from `src` to `dst` quoting
/// `quoted` (an IPv6 packet, without Ethernet header), with a valid
/// checksum; `info` is the word after the checksum (the MTU of a packet
/// too big).
pub fn icmp6_error(
    src_mac: [u8; 6],
    src: &str,
    dst: &str,
    kind: u8,
    code: u8,
    info: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&info.to_be_bytes());
    m.extend_from_slice(quoted);
    with_checksum6(ipv6_frame(src_mac, src, dst, &[], IPPROTO_ICMPV6, &m))
}

/// An ICMPv6 message (checksum left 0: the datapath checks none) of
/// `kind`: the 4-byte header, then `body`.
pub fn icmpv6(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    m
}

/// A neighbour solicitation (135) or advertisement (136) body for
/// `target`, with a link-layer address option (`option` 1 source, 2
/// target) carrying `mac`.
pub fn nd_body(target: &str, option: Option<(u8, [u8; 6])>) -> Vec<u8> {
    let target: std::net::Ipv6Addr = target.parse().expect("target");
    let mut b = vec![0; 4];
    b.extend_from_slice(&target.octets());
    if let Some((kind, mac)) = option {
        b.extend_from_slice(&[kind, 1]);
        b.extend_from_slice(&mac);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_verify_and_corrupt_ones_do_not() {
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            let mut spec = FrameSpec::new(proto, "10.0.0.1", 1234, "10.0.0.2", 80, b"hello");
            spec.ip_options = vec![1, 1, 1, 0];
            let checked = verify(&spec.build()).unwrap();
            assert_eq!((checked.sport, checked.dport), (1234, 80));
            spec.csum = L4Csum::Corrupt;
            assert!(verify(&spec.build()).is_err());
        }
        for request in [true, false] {
            let mut echo = FrameSpec::icmp_echo("10.0.0.1", "10.0.0.2", 77, request, b"ping");
            let checked = verify(&echo.build()).unwrap();
            assert_eq!(checked.sport + checked.dport, 77);
            echo.csum = L4Csum::Corrupt;
            assert!(verify(&echo.build()).is_err());
        }
        let mut udp = FrameSpec::udp("10.0.0.1", 1, "10.0.0.2", 2, b"odd");
        udp.csum = L4Csum::Zero;
        assert_eq!(verify(&udp.build()).unwrap().l4_csum, 0);
    }

    #[test]
    fn icmp_errors_and_fragments_round_trip() {
        let quoted = FrameSpec::udp("10.0.0.1", 1234, "10.0.0.2", 53, &[7; 40]).build();
        let err = icmp_error("10.0.0.9", "10.0.0.1", 3, 3, 0, &quoted, 1000);
        let checked = verify_icmp_error(&err).unwrap();
        assert!(checked.inner_l4_verified);
        assert_eq!((checked.inner_sport, checked.inner_dport), (1234, 53));
        let short = icmp_error("10.0.0.9", "10.0.0.1", 3, 3, 0, &quoted, 28);
        assert!(!verify_icmp_error(&short).unwrap().inner_l4_verified);
        let mut bad = err.clone();
        bad[14 + 20 + 8 + 12] ^= 1;
        assert!(verify_icmp_error(&bad).is_err());

        let big = FrameSpec::udp("10.0.0.1", 1, "10.0.0.2", 2, &[9; 4000]).build();
        let frags = fragment(&big, 1480);
        assert_eq!(frags.len(), 3);
        let mut shuffled = frags.clone();
        shuffled.reverse();
        let whole = reassemble(&shuffled).unwrap();
        let mut want = big.clone();
        want[20..22].copy_from_slice(&0u16.to_be_bytes());
        let c = ip_header_csum(&want[14..34]);
        want[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(whole, want);
        verify(&whole).unwrap();
    }
}
