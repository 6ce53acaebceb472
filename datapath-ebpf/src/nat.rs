// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Publication lookup: the forward DNAT decision.

use datapath_common::{Event, IPPROTO_ICMP, Ipv6Be, PubKey, PubKey6, PubValue, PubValue6};

use crate::{
    hdr::is_loopback,
    maps::{NA_LOCAL4_V1, NA_LOCAL6_V1, NA_PUB4_V1, NA_PUB6_V1},
    parse6, stats,
};

/// [`find`], counting why a match was refused (a plain miss is not).
#[inline(always)]
pub fn lookup(addr: u32, port: u16, proto: u8) -> Option<PubValue> {
    match find(addr, port, proto) {
        Ok(v) => Some(v),
        // Dropped and counted by the caller before it looks anything up.
        Err(Miss::Loopback) => None,
        Err(Miss::NotLocal) => {
            stats::count(Event::PassNotLocal);
            None
        }
        Err(Miss::None) => None,
    }
}

/// Why [`find`] found nothing.
pub enum Miss {
    None,
    /// A loopback address: never translated.
    Loopback,
    /// Only a wildcard publication, and the address is not the host's.
    NotLocal,
}

/// Finds the publication of (`addr`, `port`, `proto`): the exact entry
/// first, then the wildcard (0.0.0.0) entry if `addr` is one of the host's
/// own addresses.
///
/// Loopback destinations never match: they can only reach a served
/// interface forged (a martian), and a loopback publication must never be
/// reachable from another host (Docker #45610).
#[inline(always)]
pub fn find(addr: u32, port: u16, proto: u8) -> Result<PubValue, Miss> {
    if proto == IPPROTO_ICMP {
        // Nothing is published for ICMP (echo is parsed for masquerade).
        return Err(Miss::None);
    }
    if is_loopback(addr) {
        return Err(Miss::Loopback);
    }
    exact_or_wildcard(addr, port, proto, || is_local(addr))
}

/// Whether `addr` is one of the host's addresses (the local-address map).
#[inline(always)]
pub fn is_local(addr: u32) -> bool {
    // SAFETY: presence is all we read.
    unsafe { NA_LOCAL4_V1.get(&addr) }.is_some()
}

/// The exact entry of (`addr`, `port`, `proto`), else the wildcard's if
/// `local()` (whether `addr` is the host's, asked only when a wildcard
/// matches: the hot path of an exact publication pays one lookup);
/// [`Miss::NotLocal`] when only a wildcard matches a foreign address.
#[inline(always)]
fn exact_or_wildcard(
    addr: u32,
    port: u16,
    proto: u8,
    local: impl FnOnce() -> bool,
) -> Result<PubValue, Miss> {
    let mut key = PubKey {
        addr_be: addr,
        port_be: port,
        proto,
        _pad: 0,
    };
    // SAFETY: values are plain data copied out at once; the agent replaces
    // entries whole, so a torn read can only mix two valid publications'
    // fields for a packet racing an update, which the next packet corrects.
    if let Some(v) = unsafe { NA_PUB4_V1.get(&key) } {
        return Ok(*v);
    }
    key.addr_be = 0;
    // SAFETY: as above.
    let v = unsafe { NA_PUB4_V1.get(&key) }.copied().ok_or(Miss::None)?;
    if !local() {
        return Err(Miss::NotLocal);
    }
    Ok(v)
}

/// Finds the publication a socket of the host itself reaches at (`addr`,
/// `port`, `proto`): the exact entry first (a loopback publication
/// included: the host is where it is meant to be reachable from), then the
/// wildcard entry if `addr` is a loopback address or one of the host's.
#[inline(always)]
pub fn find_from_host(addr: u32, port: u16, proto: u8) -> Option<PubValue> {
    exact_or_wildcard(addr, port, proto, || is_loopback(addr) || is_local(addr)).ok()
}

/// The wildcard (0.0.0.0) publication of (`port`, `proto`): what a host
/// socket reaches at `::1` or one of the host's IPv6 addresses.
#[inline(always)]
pub fn wildcard(port: u16, proto: u8) -> Option<PubValue> {
    let key = PubKey {
        addr_be: 0,
        port_be: port,
        proto,
        _pad: 0,
    };
    // SAFETY: plain data copied out at once.
    unsafe { NA_PUB4_V1.get(&key) }.copied()
}

/// Whether `addr` is one of the host's IPv6 addresses.
#[inline(always)]
pub fn is_local6(addr: &Ipv6Be) -> bool {
    // SAFETY: presence is all we read.
    unsafe { NA_LOCAL6_V1.get(addr) }.is_some()
}

/// The IPv6 publication of (`addr`, `port`, `proto`): the exact entry,
/// then the wildcard (`::`) one if `addr` is the host's. `::/8`
/// destinations (`::1`, IPv4-mapped) never match: they reach a served
/// interface only forged.
#[inline(always)]
pub fn find6(addr: &Ipv6Be, port: u16, proto: u8) -> Option<PubValue6> {
    if parse6::is_reserved_dst(addr) {
        return None;
    }
    let (v, wildcard) = exact_or_wildcard6(addr, port, proto)?;
    if wildcard && !is_local6(addr) {
        stats::count(Event::PassNotLocal);
        return None;
    }
    Some(v)
}

/// The IPv6 publication a socket of the host itself reaches at (`addr`,
/// `port`, `proto`), `addr` being `::1` or one of the host's IPv6
/// addresses (the caller checks): the exact entry first (a `[::1]`
/// publication included), then the wildcard (`::`) one.
#[inline(always)]
pub fn find6_from_host(addr: &Ipv6Be, port: u16, proto: u8) -> Option<PubValue6> {
    exact_or_wildcard6(addr, port, proto).map(|(v, _)| v)
}

/// [`published`] for IPv6: on `addr` or on `[::]`.
#[inline(always)]
pub fn published6(addr: &Ipv6Be, port: u16, proto: u8) -> bool {
    exact_or_wildcard6(addr, port, proto).is_some()
}

/// The exact IPv6 entry of (`addr`, `port`, `proto`), else the wildcard
/// (`::`) one, and whether it was the wildcard's.
#[inline(always)]
fn exact_or_wildcard6(addr: &Ipv6Be, port: u16, proto: u8) -> Option<(PubValue6, bool)> {
    let mut key = PubKey6 {
        addr_be: *addr,
        port_be: port,
        proto,
        _pad: 0,
    };
    // SAFETY: plain data copied out at once (as in `exact_or_wildcard`).
    if let Some(v) = unsafe { NA_PUB6_V1.get(&key) } {
        return Some((*v, false));
    }
    key.addr_be = [0; 4];
    // SAFETY: as above.
    unsafe { NA_PUB6_V1.get(&key) }.map(|v| (*v, true))
}

/// Whether `port` is published on `addr` or on every address, so replies
/// to it would be taken for a published flow (masquerade skips it).
#[inline(always)]
pub fn published(addr: u32, port: u16, proto: u8) -> bool {
    let mut key = PubKey {
        addr_be: addr,
        port_be: port,
        proto,
        _pad: 0,
    };
    // SAFETY: presence is all we read.
    if unsafe { NA_PUB4_V1.get(&key) }.is_some() {
        return true;
    }
    key.addr_be = 0;
    // SAFETY: as above.
    unsafe { NA_PUB4_V1.get(&key) }.is_some()
}
