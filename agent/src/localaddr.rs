//! The host's addresses, from netlink: the local-address maps that
//! wildcard (0.0.0.0) publications match against (IPv4 for packets and
//! sockets, IPv6 for host sockets reaching them at a host IPv6 address),
//! and the masquerade addresses of served interfaces (IPv4).

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::address::{AddressAttribute, AddressMessage},
};

/// Every IPv4 and IPv6 address of the calling thread's network namespace,
/// with the index of the interface that holds it.
pub async fn dump(handle: &Handle) -> Result<Vec<(IpAddr, u32)>, rtnetlink::Error> {
    let mut addrs = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.try_next().await? {
        if let Some(ip) = local_of(&msg) {
            addrs.push((ip, msg.header.index));
        }
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The IPv4 addresses of `addrs`.
pub fn ipv4(addrs: &[(IpAddr, u32)]) -> Vec<(Ipv4Addr, u32)> {
    addrs
        .iter()
        .filter_map(|(ip, ifindex)| match ip {
            IpAddr::V4(ip) => Some((*ip, *ifindex)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The local address of an address message (IFA_LOCAL, else IFA_ADDRESS;
/// they differ only on point-to-point links, where IFA_LOCAL is ours).
fn local_of(msg: &AddressMessage) -> Option<IpAddr> {
    let pick = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match (a, want_local) {
            (AddressAttribute::Local(ip), true) | (AddressAttribute::Address(ip), false) => {
                Some(*ip)
            }
            _ => None,
        })
    };
    pick(true).or_else(|| pick(false))
}
