//! The host's IPv4 addresses, from netlink, for the local-address map that
//! wildcard (0.0.0.0) publications match against.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    Handle,
    packet_route::address::{AddressAttribute, AddressMessage},
};

/// Every IPv4 address of the calling thread's network namespace, with the
/// index of the interface that holds it.
pub async fn dump(handle: &Handle) -> Result<Vec<(Ipv4Addr, u32)>, rtnetlink::Error> {
    let mut addrs = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.try_next().await? {
        if let Some(ip) = ipv4_of(&msg) {
            addrs.push((ip, msg.header.index));
        }
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The local IPv4 address of an address message (IFA_LOCAL, else IFA_ADDRESS;
/// they differ only on point-to-point links, where IFA_LOCAL is ours).
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    let pick = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match (a, want_local) {
            (AddressAttribute::Local(IpAddr::V4(ip)), true)
            | (AddressAttribute::Address(IpAddr::V4(ip)), false) => Some(*ip),
            _ => None,
        })
    };
    pick(true).or_else(|| pick(false))
}
