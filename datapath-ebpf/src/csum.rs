// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Internet checksum arithmetic for XDP (TC uses the kernel's
//! `l3/l4_csum_replace` helpers, which also know `skb->ip_summed`).
//!
//! All values are raw wire-order words loaded natively: the one's complement
//! sum is byte-order independent as long as every word is loaded the same
//! way, so no byte swaps are needed (RFC 1071 §2(B)).

/// Folds a 32/64-bit one's complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for a 16-bit field change.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// RFC 1624 eqn. 3 for a 32-bit field change (two 16-bit words at once).
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let old_sum = u64::from(!old & 0xffff) + u64::from(!old >> 16);
    let new_sum = u64::from(new & 0xffff) + u64::from(new >> 16);
    !fold(u64::from(!check) + old_sum + new_sum)
}

/// The value a CHECKSUM_PARTIAL sender leaves in the TCP/UDP checksum field:
/// the folded, uncomplemented pseudo-header sum (the kernel's
/// `~csum_tcpudp_magic(saddr, daddr, len, proto, 0)`). The NIC, or the stack
/// when it resolves the checksum in software, adds the L4 bytes later.
///
/// XDP cannot see `skb->ip_summed`. A field equal to this seed is either a
/// CHECKSUM_PARTIAL packet from a local sender (a veth peer) or, with
/// probability ~2^-16, a complete checksum that happens to match. The two
/// need different updates (a seed only absorbs the address change), so XDP
/// leaves such packets to TC, whose helpers know which case it is.
#[inline(always)]
pub fn partial_seed(saddr: u32, daddr: u32, proto: u8, l4_len: u16) -> u16 {
    let sum = u64::from(saddr & 0xffff)
        + u64::from(saddr >> 16)
        + u64::from(daddr & 0xffff)
        + u64::from(daddr >> 16)
        // Wire words [0, proto] and the big-endian length, loaded natively.
        + u64::from(u16::from_ne_bytes([0, proto]))
        + u64::from(u16::from_ne_bytes(l4_len.to_be_bytes()));
    fold(sum)
}
