// SPDX-License-Identifier: GPL-2.0 OR MIT
//! One description of a NAT rewrite, two ways to carry it out.
//!
//! A rewrite is a list of field changes with the checksums that cover
//! them. [`Backend`] is how the bytes change: [`XdpBackend`] writes through
//! bounds-checked pointers and updates checksums incrementally (RFC 1624),
//! for the complete checksums of wire packets; [`TcBackend`] uses the
//! kernel's `bpf_l3/l4_csum_replace` and `bpf_skb_store_bytes`, which also
//! know `skb->ip_summed`: a CHECKSUM_PARTIAL seed absorbs only the
//! pseudo-header change, a complete checksum absorbs everything, and a
//! CHECKSUM_COMPLETE `skb->csum` is kept in step.
//!
//! A failed step can leave a packet half-written: the caller drops it and
//! counts `drop_rewrite_failed`.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use datapath_common::{IPPROTO_ICMP, IPPROTO_UDP, Ipv6Be};

use crate::{
    csum,
    hdr::{IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, IP6_DST_OFF, IP6_SRC_OFF, ptr_at_mut},
    parse::Packet,
    parse6::Packet6,
};

/// A rewrite step failed; the packet may be half-written.
pub struct Failed;

/// How an L4 checksum covers a changed field.
#[derive(Clone, Copy)]
pub struct Covers {
    /// The field is in the pseudo-header (an IPv4 address under TCP/UDP),
    /// not in the L4 bytes.
    pub pseudo: bool,
    /// A UDP checksum: 0 means "none" and stays 0; a result of 0 is sent
    /// as all ones (RFC 768).
    pub udp: bool,
}

/// How bytes and checksums change.
pub trait Backend {
    fn store4(&mut self, off: usize, value: u32) -> Result<(), Failed>;
    fn store2(&mut self, off: usize, value: u16) -> Result<(), Failed>;
    /// Updates the IPv4 header checksum at `csum_off` for a 4-byte field
    /// of the header changing from `old` to `new`.
    fn ip_csum4(&mut self, csum_off: usize, old: u32, new: u32) -> Result<(), Failed>;
    /// Updates the L4 checksum at `csum_off` for a 4-byte field.
    fn l4_csum4(&mut self, csum_off: usize, old: u32, new: u32, c: Covers) -> Result<(), Failed>;
    /// Updates the L4 checksum at `csum_off` for a 2-byte field.
    fn l4_csum2(&mut self, csum_off: usize, old: u16, new: u16, c: Covers) -> Result<(), Failed>;
}

/// XDP: plain writes, incremental checksum arithmetic.
pub struct XdpBackend {
    pub data: usize,
    pub data_end: usize,
}

impl XdpBackend {
    #[inline(always)]
    fn csum_update(&mut self, off: usize, c: Covers, f: impl Fn(u16) -> u16) -> Result<(), Failed> {
        let p = ptr_at_mut::<[u8; 2]>(self.data, self.data_end, off).ok_or(Failed)?;
        // SAFETY: bounds checked by ptr_at_mut; byte arrays need no alignment.
        let old = u16::from_ne_bytes(unsafe { *p });
        if c.udp && old == 0 {
            return Ok(());
        }
        let mut new = f(old);
        if c.udp && new == 0 {
            new = 0xffff;
        }
        // SAFETY: as above.
        unsafe { *p = new.to_ne_bytes() };
        Ok(())
    }
}

impl Backend for XdpBackend {
    #[inline(always)]
    fn store4(&mut self, off: usize, value: u32) -> Result<(), Failed> {
        let p = ptr_at_mut::<[u8; 4]>(self.data, self.data_end, off).ok_or(Failed)?;
        // SAFETY: bounds checked by ptr_at_mut.
        unsafe { *p = value.to_ne_bytes() };
        Ok(())
    }

    #[inline(always)]
    fn store2(&mut self, off: usize, value: u16) -> Result<(), Failed> {
        let p = ptr_at_mut::<[u8; 2]>(self.data, self.data_end, off).ok_or(Failed)?;
        // SAFETY: bounds checked by ptr_at_mut.
        unsafe { *p = value.to_ne_bytes() };
        Ok(())
    }

    #[inline(always)]
    fn ip_csum4(&mut self, csum_off: usize, old: u32, new: u32) -> Result<(), Failed> {
        let c = Covers {
            pseudo: false,
            udp: false,
        };
        self.csum_update(csum_off, c, |sum| csum::replace4(sum, old, new))
    }

    #[inline(always)]
    fn l4_csum4(&mut self, csum_off: usize, old: u32, new: u32, c: Covers) -> Result<(), Failed> {
        self.csum_update(csum_off, c, |sum| csum::replace4(sum, old, new))
    }

    #[inline(always)]
    fn l4_csum2(&mut self, csum_off: usize, old: u16, new: u16, c: Covers) -> Result<(), Failed> {
        self.csum_update(csum_off, c, |sum| csum::replace2(sum, old, new))
    }
}

/// TC: the kernel's helpers.
pub struct TcBackend<'a>(pub &'a TcContext);

impl TcBackend<'_> {
    #[inline(always)]
    fn flags(c: Covers, size: u64) -> u64 {
        let mut flags = size;
        if c.pseudo {
            flags |= u64::from(BPF_F_PSEUDO_HDR);
        }
        if c.udp {
            flags |= u64::from(BPF_F_MARK_MANGLED_0);
        }
        flags
    }
}

impl Backend for TcBackend<'_> {
    #[inline(always)]
    fn store4(&mut self, off: usize, value: u32) -> Result<(), Failed> {
        self.0.store(off, &value, 0).map_err(|_| Failed)
    }

    #[inline(always)]
    fn store2(&mut self, off: usize, value: u16) -> Result<(), Failed> {
        self.0.store(off, &value, 0).map_err(|_| Failed)
    }

    #[inline(always)]
    fn ip_csum4(&mut self, csum_off: usize, old: u32, new: u32) -> Result<(), Failed> {
        self.0
            .l3_csum_replace(csum_off, u64::from(old), u64::from(new), 4)
            .map_err(|_| Failed)
    }

    #[inline(always)]
    fn l4_csum4(&mut self, csum_off: usize, old: u32, new: u32, c: Covers) -> Result<(), Failed> {
        self.0
            .l4_csum_replace(csum_off, u64::from(old), u64::from(new), Self::flags(c, 4))
            .map_err(|_| Failed)
    }

    #[inline(always)]
    fn l4_csum2(&mut self, csum_off: usize, old: u16, new: u16, c: Covers) -> Result<(), Failed> {
        self.0
            .l4_csum_replace(csum_off, u64::from(old), u64::from(new), Self::flags(c, 2))
            .map_err(|_| Failed)
    }
}

/// One address and one port of a TCP/UDP/echo packet replaced, with every
/// checksum that covers them.
pub struct Nat {
    addr_off: usize,
    old_addr: u32,
    new_addr: u32,
    port_off: usize,
    old_port: u16,
    new_port: u16,
    csum_off: usize,
    proto: u8,
}

impl Nat {
    /// Destination address and port (DNAT, replies to masquerade).
    #[inline(always)]
    pub fn destination(pkt: &Packet, addr: u32, port: u16) -> Self {
        Self {
            addr_off: IP_DST_OFF,
            old_addr: pkt.daddr,
            new_addr: addr,
            port_off: pkt.dport_off,
            old_port: pkt.dport,
            new_port: port,
            csum_off: pkt.l4_csum_off,
            proto: pkt.proto,
        }
    }

    /// Source address and port (reverse NAT, masquerade).
    #[inline(always)]
    pub fn source(pkt: &Packet, addr: u32, port: u16) -> Self {
        Self {
            addr_off: IP_SRC_OFF,
            old_addr: pkt.saddr,
            new_addr: addr,
            port_off: pkt.sport_off,
            old_port: pkt.sport,
            new_port: port,
            csum_off: pkt.l4_csum_off,
            proto: pkt.proto,
        }
    }

    /// Checksums first, then the fields.
    #[inline(always)]
    pub fn apply<B: Backend>(&self, b: &mut B) -> Result<(), Failed> {
        let udp = self.proto == IPPROTO_UDP;
        // The ICMP checksum has no pseudo-header: addresses are not in it.
        if self.proto != IPPROTO_ICMP {
            let c = Covers { pseudo: true, udp };
            b.l4_csum4(self.csum_off, self.old_addr, self.new_addr, c)?;
        }
        let c = Covers { pseudo: false, udp };
        b.l4_csum2(self.csum_off, self.old_port, self.new_port, c)?;
        b.ip_csum4(IP_CSUM_OFF, self.old_addr, self.new_addr)?;
        b.store4(self.addr_off, self.new_addr)?;
        b.store2(self.port_off, self.new_port)
    }
}

/// One IPv6 address and one port of a TCP/UDP packet replaced, with the
/// L4 checksum (whose pseudo-header holds the address; IPv6 has no header
/// checksum): the address word by word.
pub struct Nat6 {
    addr_off: usize,
    old_addr: Ipv6Be,
    new_addr: Ipv6Be,
    port_off: usize,
    old_port: u16,
    new_port: u16,
    csum_off: usize,
    udp: bool,
}

impl Nat6 {
    /// Destination address and port (DNAT).
    #[inline(always)]
    pub fn destination(pkt: &Packet6, addr: Ipv6Be, port: u16) -> Self {
        Self {
            addr_off: IP6_DST_OFF,
            old_addr: pkt.daddr,
            new_addr: addr,
            port_off: pkt.dport_off,
            old_port: pkt.dport,
            new_port: port,
            csum_off: pkt.l4_csum_off,
            udp: pkt.proto == IPPROTO_UDP,
        }
    }

    /// Source address and port (reverse NAT).
    #[inline(always)]
    pub fn source(pkt: &Packet6, addr: Ipv6Be, port: u16) -> Self {
        Self {
            addr_off: IP6_SRC_OFF,
            old_addr: pkt.saddr,
            new_addr: addr,
            port_off: pkt.sport_off,
            old_port: pkt.sport,
            new_port: port,
            csum_off: pkt.l4_csum_off,
            udp: pkt.proto == IPPROTO_UDP,
        }
    }

    /// Checksum first, then the fields.
    #[inline(always)]
    pub fn apply<B: Backend>(&self, b: &mut B) -> Result<(), Failed> {
        let pseudo = Covers {
            pseudo: true,
            udp: self.udp,
        };
        for i in 0..4 {
            if self.old_addr[i] != self.new_addr[i] {
                b.l4_csum4(self.csum_off, self.old_addr[i], self.new_addr[i], pseudo)?;
            }
        }
        let c = Covers {
            pseudo: false,
            udp: self.udp,
        };
        b.l4_csum2(self.csum_off, self.old_port, self.new_port, c)?;
        for i in 0..4 {
            b.store4(self.addr_off + 4 * i, self.new_addr[i])?;
        }
        b.store2(self.port_off, self.new_port)
    }
}

/// The address of a later fragment replaced: its L4 checksum sits in the
/// first fragment, which was translated with the ports.
#[inline(always)]
pub fn address<B: Backend>(b: &mut B, addr_off: usize, old: u32, new: u32) -> Result<(), Failed> {
    b.ip_csum4(IP_CSUM_OFF, old, new)?;
    b.store4(addr_off, new)
}

/// The IPv6 destination (`dst`) or source address and port of `pkt`
/// rewritten in a TC program's packet, in a frame of its own (a
/// BPF-to-BPF call: `Nat6` and its helpers' arguments would otherwise sit
/// in every caller's frame); false if a helper failed (the packet may be
/// half-written).
#[inline(never)]
pub fn nat6_tc(
    skb: core::ptr::NonNull<aya_ebpf::bindings::__sk_buff>,
    pkt: &Packet6,
    addr: &Ipv6Be,
    port: u16,
    dst: bool,
) -> bool {
    let ctx = &TcContext::new(skb);
    let nat = if dst {
        Nat6::destination(pkt, *addr, port)
    } else {
        Nat6::source(pkt, *addr, port)
    };
    nat.apply(&mut TcBackend(ctx)).is_ok()
}
