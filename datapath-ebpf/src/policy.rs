// SPDX-License-Identifier: GPL-2.0 OR MIT
//! The isolation rules, as pure decisions so they read in one place.
//!
//! Checked where a container's packets enter the host (TC ingress of its
//! host-side veth, see endpoint.rs): the source network comes from the
//! interface the packet arrived on, the destination network from the
//! destination address. Traffic between endpoints of different networks is
//! dropped whichever way it is routed, in both directions, since each
//! side's packets are checked at its own interface.

use datapath_common::{
    EndpointAddr, EndpointIface6, Event, Ipv6Be, NET_F_INTERNAL, NET_F_NO_ICC, NetPolicy,
};

use crate::{hdr::is_loopback, parse6};

/// Whether `addr` (wire order) is a broadcast or multicast destination for
/// a sender on `net`: 255.255.255.255, the subnet's broadcast address, or
/// 224.0.0.0/4. The bridge floods those to every container of the network.
#[inline(always)]
pub fn is_flooded(net: &NetPolicy, addr: u32) -> bool {
    let first = addr.to_ne_bytes()[0];
    addr == u32::MAX
        || (first & 0xf0) == 0xe0
        || (addr & net.mask_be == net.subnet_be && addr | net.mask_be == u32::MAX)
}

/// The decision for a packet from an endpoint of `src` to `daddr`, whose
/// own entry (if `daddr` is an endpoint) is `dst`. `Err` carries the drop
/// reason.
#[inline(always)]
pub fn decide(src: &NetPolicy, daddr: u32, dst: Option<&EndpointAddr>) -> Result<(), Event> {
    if is_loopback(daddr) {
        // The container's own 127.0.0.1 never leaves it; this one is forged.
        return Err(Event::DropLoopbackDst);
    }
    if let Some(dst) = dst {
        return between_endpoints(src, dst);
    }
    if src.flags & NET_F_INTERNAL != 0 && daddr & src.mask_be != src.subnet_be {
        return Err(Event::DropInternal);
    }
    if src.flags & NET_F_NO_ICC != 0 && is_flooded(src, daddr) {
        // Flooded by the bridge to the other containers: as good as
        // container to container.
        return Err(Event::DropIcc);
    }
    Ok(())
}

/// The decision for an IPv6 packet from an endpoint of `src` (whose IPv6
/// side is `src6`) to `daddr`, whose own entry (if `daddr` is an endpoint
/// address) is `dst`. `control`: neighbour discovery or MLD, which reach
/// the network's multicast groups even with icc off (containers must
/// resolve their gateway). Link-local and multicast destinations stay on
/// the bridge; `::/8` destinations were dropped by the caller.
#[inline(always)]
pub fn decide6(
    src: &NetPolicy,
    src6: &EndpointIface6,
    daddr: &Ipv6Be,
    dst: Option<&EndpointAddr>,
    control: bool,
) -> Result<(), Event> {
    if let Some(dst) = dst {
        return between_endpoints(src, dst);
    }
    if parse6::is_multicast(daddr) {
        if src.flags & NET_F_NO_ICC != 0 && !control {
            return Err(Event::DropIcc);
        }
        return Ok(());
    }
    if parse6::is_link_local(daddr) {
        // The gateway's link-local address (no other is on the bridge).
        return Ok(());
    }
    if src.flags & NET_F_INTERNAL != 0 && !parse6::in_prefix(daddr, &src6.subnet, src6.prefix_len) {
        return Err(Event::DropInternal);
    }
    Ok(())
}

/// Container to container, either family: only within one network, and
/// only with icc on.
#[inline(always)]
fn between_endpoints(src: &NetPolicy, dst: &EndpointAddr) -> Result<(), Event> {
    if dst.net.net_id != src.net_id {
        return Err(Event::DropIsolation);
    }
    if src.flags & NET_F_NO_ICC != 0 {
        return Err(Event::DropIcc);
    }
    Ok(())
}

/// Whether `owner` (the endpoint-address entry of a packet's claimed
/// source) belongs to the interface the packet came from, with the MAC it
/// came with: a container may send from its own addresses only.
#[inline(always)]
pub fn owns(owner: Option<&EndpointAddr>, ifindex: u32, src_mac: &[u8; 6]) -> bool {
    owner.is_some_and(|o| o.host_ifindex == ifindex && mac_eq(&o.mac, src_mac))
}

/// MAC equality without a `memcmp` call (eBPF has none).
#[inline(always)]
pub fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    u32::from_ne_bytes([a[0], a[1], a[2], a[3]]) == u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        && u16::from_ne_bytes([a[4], a[5]]) == u16::from_ne_bytes([b[4], b[5]])
}
