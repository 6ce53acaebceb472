//! The real [`Host`]: rtnetlink for links, addresses and routes, and
//! held sockets for port reservations.
//!
//! Each netlink operation runs on the worker of its namespace (see
//! `workers`): the host's for bridges and host-side veths, the container's
//! for its interface, addresses and routes.

use std::{
    fs::File,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::Path,
};

use futures_util::TryStreamExt as _;
use ipnet::{Ipv4Net, Ipv6Net};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType},
    },
};

use super::{
    BridgeConfig, BridgeLink, DefaultRoute, EndpointConfig, EndpointLink, Host, HostError,
    HostPort, IFACE_PREFIX, NetnsId, ResolverSockets, link_local6, parse_mac,
    ports::{self, Reservations},
    workers::Workers,
};

#[derive(Debug, Default)]
pub struct NetlinkHost {
    reservations: Reservations,
    workers: Workers,
}

impl NetlinkHost {
    /// `hold_ports`: see [`Reservations::new`].
    pub fn new(hold_ports: bool) -> Self {
        Self {
            reservations: Reservations::new(hold_ports),
            workers: Workers::default(),
        }
    }

    /// Runs `op` on the worker of the namespace at `netns`.
    fn run_in_netns<T, F, Fut>(&mut self, netns: &Path, op: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, HostError>> + 'static,
    {
        let id = self.netns_id(netns)?;
        self.workers.run(Some((netns, id)), op)
    }
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> HostError {
    let op = op.into();
    move |source| HostError::Netlink { op, source }
}

/// Names the operation an I/O error came from.
pub(super) fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> HostError {
    let op = op.into();
    move |source| HostError::Io { op, source }
}

/// Whether a netlink error says the object does not exist.
fn is_not_found(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if matches!(m.to_io().raw_os_error(), Some(libc::ENODEV) | Some(libc::ENOENT)))
}

/// The index of link `name`, if it exists.
async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, HostError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(nl(format!("looking up interface {name}"))(e)),
    }
}

fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_mac(msg: &LinkMessage) -> String {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Writes a sysctl of the calling thread's network namespace.
/// Every IPv4 route of the handle's namespace.
async fn ipv4_routes(handle: &Handle) -> Result<Vec<RouteMessage>, HostError> {
    handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))
}

/// Adds the default route of `gw`'s family via `gw` on interface `index`
/// (`ifname`).
async fn add_default_route(
    handle: &Handle,
    index: u32,
    gw: IpAddr,
    ifname: &str,
) -> Result<(), HostError> {
    let route = match gw {
        IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
        IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
    };
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(nl(format!("adding the default route via {gw} on {ifname}")))
}

/// Both default routes of `gw` on interface `index` (`ifname`).
async fn add_default_routes(
    handle: &Handle,
    index: u32,
    gw: DefaultRoute,
    ifname: &str,
) -> Result<(), HostError> {
    add_default_route(handle, index, IpAddr::V4(gw.v4), ifname).await?;
    if let Some(v6) = gw.v6 {
        add_default_route(handle, index, IpAddr::V6(v6), ifname).await?;
    }
    Ok(())
}

async fn ipv6_routes(handle: &Handle) -> Result<Vec<RouteMessage>, HostError> {
    handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing IPv6 routes"))
}

/// The IPv6 sysctls of a dual-stack container interface, set before any
/// address: addresses come only from the agent (no SLAAC, no router
/// advertisements, no temporary or generated link-local addresses), and
/// without DAD (the agent's IPAM hands each out once), so they are usable
/// at once.
fn dual_stack_sysctls(ifname: &str) -> Result<(), HostError> {
    for (key, value) in [
        ("disable_ipv6", "0"),
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("addr_gen_mode", "1"),
    ] {
        sysctl(&format!("/proc/sys/net/ipv6/conf/{ifname}/{key}"), value)?;
    }
    Ok(())
}

fn sysctl(path: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(path, value).map_err(io_err(format!("writing {path}")))
}

impl Host for NetlinkHost {
    fn routes(&mut self) -> Result<Vec<(Ipv4Net, String)>, HostError> {
        self.workers.run(None, |handle| async move {
            let mut routes = Vec::new();
            for msg in ipv4_routes(&handle).await? {
                let h = &msg.header;
                if h.kind != RouteType::Unicast
                    || h.destination_prefix_length == 0
                    || h.table == RouteHeader::RT_TABLE_UNSPEC
                {
                    continue;
                }
                let dst = msg.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                if let Some(dst) = dst
                    && let Ok(net) = Ipv4Net::new(dst, h.destination_prefix_length)
                {
                    routes.push((net.trunc(), format!("host route {}", net.trunc())));
                }
            }
            Ok(routes)
        })
    }

    fn routes6(&mut self) -> Result<Vec<(Ipv6Net, String)>, HostError> {
        self.workers.run(None, |handle| async move {
            let mut routes = Vec::new();
            for msg in ipv6_routes(&handle).await? {
                let h = &msg.header;
                if h.kind != RouteType::Unicast
                    || h.destination_prefix_length == 0
                    || h.table != RouteHeader::RT_TABLE_MAIN
                {
                    continue;
                }
                let dst = msg.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(*ip),
                    _ => None,
                });
                if let Some(dst) = dst
                    && let Ok(net) = Ipv6Net::new(dst, h.destination_prefix_length)
                    && !dst.is_unicast_link_local()
                {
                    routes.push((net.trunc(), format!("host route {}", net.trunc())));
                }
            }
            Ok(routes)
        })
    }

    fn ensure_bridge(&mut self, bridge: &BridgeConfig) -> Result<BridgeLink, HostError> {
        let bridge = bridge.clone();
        self.workers.run(None, move |handle| async move {
            let name = &bridge.name;
            let mut created = false;
            let index = match link_index(&handle, name).await? {
                Some(index) => index,
                None => {
                    created = true;
                    handle
                        .link()
                        .add(LinkBridge::new(name).build())
                        .execute()
                        .await
                        .map_err(nl(format!("creating bridge {name}")))?;
                    link_index(&handle, name).await?.ok_or_else(|| {
                        HostError::Other(format!("bridge {name} vanished after creation"))
                    })?
                }
            };
            let configured = async {
                handle
                    .address()
                    .add(index, IpAddr::V4(bridge.gateway), bridge.prefix_len)
                    .replace()
                    .execute()
                    .await
                    .map_err(nl(format!("adding {} to {name}", bridge.gateway)))?;
                if let Some((gw6, len)) = bridge.gateway6 {
                    // No DAD: the gateway is usable at once.
                    sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0")?;
                    sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "0")?;
                    // The datapath's FIB lookups from the bridge need it
                    // (only this interface's: the host's own interfaces
                    // keep accepting router advertisements).
                    sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/forwarding"), "1")?;
                    handle
                        .address()
                        .add(index, IpAddr::V6(gw6), len)
                        .replace()
                        .execute()
                        .await
                        .map_err(nl(format!("adding {gw6} to {name}")))?;
                }
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(nl(format!("bringing {name} up")))
            };
            if let Err(e) = configured.await {
                // A bridge made here is not left behind half-configured.
                if created {
                    let _ = handle.link().del(index).execute().await;
                }
                return Err(e);
            }
            let mut links = handle.link().get().match_index(index).execute();
            let msg = links
                .try_next()
                .await
                .map_err(nl(format!("reading {name}")))?
                .ok_or_else(|| HostError::Other(format!("bridge {name} vanished")))?;
            let mac = parse_mac(&link_mac(&msg))
                .ok_or_else(|| HostError::Other(format!("bridge {name} has no MAC address")))?;
            Ok(BridgeLink {
                ifindex: index,
                mac,
            })
        })
    }

    fn remove_bridge(&mut self, name: &str) -> Result<(), HostError> {
        self.remove_link(name)
    }

    fn add_endpoint(&mut self, ep: &EndpointConfig) -> Result<EndpointLink, HostError> {
        let netns = File::open(&ep.netns).map_err(io_err(format!(
            "opening the container's network namespace {}",
            ep.netns.display()
        )))?;
        let host_side = ep.clone();
        let host_ifindex = self.workers.run(None, move |handle| async move {
            let ep = host_side;
            let bridge = link_index(&handle, &ep.bridge)
                .await?
                .ok_or_else(|| HostError::Other(format!("bridge {} is missing", ep.bridge)))?;
            // The peer is created directly in the container's namespace
            // under its final name: it never appears on the host.
            let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(ep.ifname.clone())
                .setns_by_fd(netns.as_raw_fd());
            if let Some(mac) = ep.mac {
                peer = peer.address(mac.to_vec());
            }
            let peer = peer.build();
            let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
                .name(ep.host_ifname.clone())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build();
            handle.link().add(veth).execute().await.map_err(nl(format!(
                "creating veth {} <-> {} in {}",
                ep.host_ifname,
                ep.ifname,
                ep.netns.display()
            )))?;
            let index = link_index(&handle, &ep.host_ifname).await?.ok_or_else(|| {
                HostError::Other(format!("{} vanished after creation", ep.host_ifname))
            })?;
            let up = LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build();
            if let Err(e) = handle.link().set(up).execute().await {
                let _ = handle.link().del(index).execute().await;
                return Err(nl(format!("adding {} to {}", ep.host_ifname, ep.bridge))(e));
            }
            Ok(index)
        })?;
        let inside = ep.clone();
        let configured = self.run_in_netns(&ep.netns, move |handle| async move {
            let ep = inside;
            let mut links = handle.link().get().match_name(ep.ifname.clone()).execute();
            let link = links
                .try_next()
                .await
                .map_err(nl(format!("finding {} in the container", ep.ifname)))?
                .ok_or_else(|| {
                    HostError::Other(format!("{} missing in the container", ep.ifname))
                })?;
            let index = link.header.index;
            match ep.ip6 {
                Some((ip6, len)) => {
                    dual_stack_sysctls(&ep.ifname)?;
                    let mac = parse_mac(&link_mac(&link)).ok_or_else(|| {
                        HostError::Other(format!("{} has no MAC address", ep.ifname))
                    })?;
                    for (addr, len) in [(link_local6(mac), 64), (ip6, len)] {
                        handle
                            .address()
                            .add(index, IpAddr::V6(addr), len)
                            .execute()
                            .await
                            .map_err(nl(format!("adding {addr}/{len} to {}", ep.ifname)))?;
                    }
                }
                // The network is IPv4 only: no IPv6 (link-local included)
                // reaches around the isolation policy.
                None => sysctl(
                    &format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", ep.ifname),
                    "1",
                )
                .or_else(|e| match &e {
                    HostError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                        Ok(())
                    }
                    _ => Err(e),
                })?,
            }
            handle
                .address()
                .add(index, IpAddr::V4(ep.ip), ep.prefix_len)
                .execute()
                .await
                .map_err(nl(format!(
                    "adding {}/{} to {}",
                    ep.ip, ep.prefix_len, ep.ifname
                )))?;
            for idx in [Some(index), link_index(&handle, "lo").await?]
                .into_iter()
                .flatten()
            {
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(idx).up().build())
                    .execute()
                    .await
                    .map_err(nl("bringing container interfaces up"))?;
            }
            if let Some(gw) = ep.default_gateway {
                add_default_routes(&handle, index, gw, &ep.ifname).await?;
            }
            Ok(link_mac(&link))
        });
        match configured {
            Ok(mac) => Ok(EndpointLink { host_ifindex, mac }),
            Err(e) => {
                // Deleting the host side deletes the pair.
                let _ = self.remove_link(&ep.host_ifname);
                Err(e)
            }
        }
    }

    fn remove_endpoint(&mut self, host_ifname: &str) -> Result<(), HostError> {
        self.remove_link(host_ifname)
    }

    fn set_default_route(
        &mut self,
        netns: &Path,
        ifname: &str,
        gateway: Option<DefaultRoute>,
    ) -> Result<(), HostError> {
        let ifname = ifname.to_owned();
        self.run_in_netns(netns, move |handle| async move {
            let mut routes = ipv4_routes(&handle).await?;
            // A kernel without IPv6 has no IPv6 routes to remove.
            routes.extend(ipv6_routes(&handle).await.unwrap_or_default());
            let defaults = routes.into_iter().filter(|m| {
                m.header.destination_prefix_length == 0
                    && m.header.table == RouteHeader::RT_TABLE_MAIN
                    && m.header.kind == RouteType::Unicast
            });
            for msg in defaults {
                match handle.route().del(msg).execute().await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(nl("removing the default route")(e)),
                }
            }
            let Some(gw) = gateway else {
                return Ok(());
            };
            let index = link_index(&handle, &ifname)
                .await?
                .ok_or_else(|| HostError::Other(format!("{ifname} missing in the container")))?;
            add_default_routes(&handle, index, gw, &ifname).await
        })
    }

    fn forget_netns(&mut self, netns: &Path) {
        if let Ok(id) = self.netns_id(netns) {
            self.workers.forget(id);
        }
    }

    fn driver(&mut self, iface: &str) -> Result<Option<String>, HostError> {
        super::ethtool::driver(iface).map_err(io_err(format!("reading the driver of {iface}")))
    }

    fn ifindex(&mut self, name: &str) -> Result<Option<u32>, HostError> {
        let name = name.to_owned();
        self.workers.run(None, move |handle| async move {
            link_index(&handle, &name).await
        })
    }

    fn own_links(&mut self) -> Result<Vec<String>, HostError> {
        self.workers.run(None, |handle| async move {
            let mut names = Vec::new();
            let mut links = handle.link().get().execute();
            while let Some(msg) = links.try_next().await.map_err(nl("listing interfaces"))? {
                if let Some(name) = link_name(&msg)
                    && name.starts_with(IFACE_PREFIX)
                {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
    }

    fn reserve_port(&mut self, port: HostPort) -> Result<(), HostError> {
        self.reservations.reserve(port)
    }

    fn reserve_ports(&mut self, ports: &[HostPort]) -> Result<(), HostError> {
        self.reservations.reserve_all(ports)
    }

    fn release_port(&mut self, port: HostPort) {
        self.reservations.release(port);
    }

    fn ephemeral_ports(&mut self) -> (u16, u16, Vec<(u16, u16)>) {
        ports::ephemeral_ports()
    }

    fn netns_id(&mut self, path: &Path) -> Result<NetnsId, HostError> {
        use std::os::unix::fs::MetadataExt as _;
        /// `statfs` magic of nsfs.
        const NSFS_MAGIC: i64 = 0x6e73_6673;
        /// `ioctl(NS_GET_NSTYPE)`: `_IO(0xb7, 0x3)`.
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        let err = |reason: String| HostError::Netns {
            path: path.to_owned(),
            reason,
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| err("bad path".into()))?;
        // SAFETY: statfs into a zeroed struct with a valid C string.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(err(io::Error::last_os_error().to_string()));
        }
        let not_net = || {
            err(
                "not a network namespace (expected e.g. /run/netns/NAME or /proc/PID/ns/net)"
                    .into(),
            )
        };
        if st.f_type as i64 != NSFS_MAGIC {
            return Err(not_net());
        }
        let file = File::open(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: an ioctl without arguments on a descriptor we own.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind != libc::CLONE_NEWNET {
            return Err(not_net());
        }
        let meta = file.metadata().map_err(|e| err(e.to_string()))?;
        Ok(NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn own_netns(&mut self) -> Result<NetnsId, HostError> {
        self.netns_id(Path::new("/proc/self/ns/net"))
    }

    fn endpoint_link(
        &mut self,
        host_ifname: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<EndpointLink>, HostError> {
        let Some(host_ifindex) = self.ifindex(host_ifname)? else {
            return Ok(None);
        };
        let ifname = ifname.to_owned();
        let mac = self.run_in_netns(netns, move |handle| async move {
            let mut links = handle.link().get().match_name(ifname.clone()).execute();
            let link = links
                .try_next()
                .await
                .map_err(nl(format!("finding {ifname} in the container")))?
                .ok_or_else(|| HostError::Other(format!("{ifname} missing in the container")))?;
            Ok(link_mac(&link))
        })?;
        Ok(Some(EndpointLink { host_ifindex, mac }))
    }

    fn interface_addrs(
        &mut self,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<Vec<IpAddr>>, HostError> {
        let ifname = ifname.to_owned();
        self.run_in_netns(netns, move |handle| async move {
            let Some(index) = link_index(&handle, &ifname).await? else {
                return Ok(None);
            };
            let addrs = crate::localaddr::dump(&handle)
                .await
                .map_err(nl(format!("listing the addresses of {ifname}")))?;
            Ok(Some(
                addrs
                    .into_iter()
                    .filter(|(_, i)| *i == index)
                    .map(|(ip, _)| ip)
                    .collect(),
            ))
        })
    }

    fn resolver_sockets(
        &mut self,
        netns: &Path,
        program: Option<std::os::fd::OwnedFd>,
    ) -> Result<ResolverSockets, HostError> {
        self.run_in_netns(netns, move |_handle| async move {
            super::resolver::sockets(program)
        })
    }
}

impl NetlinkHost {
    /// Deletes a host interface by name; an absent one is fine.
    fn remove_link(&mut self, name: &str) -> Result<(), HostError> {
        let name = name.to_owned();
        self.workers.run(None, move |handle| async move {
            let Some(index) = link_index(&handle, &name).await? else {
                return Ok(());
            };
            match handle.link().del(index).execute().await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(nl(format!("deleting {name}"))(e)),
            }
        })
    }
}
