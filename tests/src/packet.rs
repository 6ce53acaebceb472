//! Frames built and checked from scratch, independent of the datapath's
//! own checksum code, so a datapath bug cannot hide behind a shared helper.

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub use datapath_common::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

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
    pub csum: L4Csum,
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
            csum: L4Csum::Valid,
        }
    }

    /// The L4 segment (header + payload) with its checksum field filled.
    fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        let csum_off = match self.proto {
            IPPROTO_TCP => {
                l4.extend_from_slice(&1u32.to_be_bytes()); // seq
                l4.extend_from_slice(&0u32.to_be_bytes()); // ack
                l4.extend_from_slice(&[0x50, 0x02]); // doff 5, SYN
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
        f.extend_from_slice(&0x1234u16.to_be_bytes());
        f.extend_from_slice(&self.frag_off.to_be_bytes());
        f.push(64);
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
}
