//! An in-memory [`Host`] for tests: records bridges, endpoints and
//! reservations, and can be told that some ports are held elsewhere.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;

use super::{
    BridgeConfig, BridgeLink, EndpointConfig, EndpointLink, Host, HostError, HostPort, NetnsId,
};

#[derive(Debug, Default)]
pub struct FakeHost {
    pub routes: Vec<(Ipv4Net, String)>,
    pub bridges: BTreeMap<String, BridgeConfig>,
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// The ifindex each endpoint's host side got.
    pub ifindexes: BTreeMap<String, u32>,
    pub reserved: BTreeSet<HostPort>,
    /// Ports "another process" holds: reserving them fails.
    pub foreign: BTreeSet<HostPort>,
    /// When set, creating an endpoint fails (after nothing was made).
    pub fail_endpoints: bool,
    pub next_ifindex: u32,
    /// The ephemeral range handed out (default a tiny one, to test
    /// exhaustion cheaply).
    pub ephemeral: Option<(u16, u16)>,
    /// Namespace paths that now name another namespace than their hash.
    pub replaced_netns: BTreeMap<PathBuf, NetnsId>,
    /// The container-side MAC the "kernel" reports, by host-side name
    /// (default: what add_endpoint handed out).
    pub kernel_macs: BTreeMap<String, String>,
    /// Bridges whose creation fails.
    pub fail_bridges: BTreeSet<String>,
    /// Endpoints (host-side names) whose recreation fails.
    pub fail_endpoint_names: BTreeSet<String>,
    /// When set, listing links fails (a netlink dump error).
    pub fail_dumps: bool,
    /// The order host objects were removed in, with [`crate::datapath::fake::next_seq`].
    pub removals: Vec<(u64, String)>,
    /// The host's addresses, when set: reserving a port on any other
    /// (specific) address fails as the kernel's bind does.
    pub local_addrs: Option<BTreeSet<std::net::IpAddr>>,
    /// The namespaces resolver sockets were made for, in order (the fake
    /// binds them on 127.0.0.1, ephemeral ports, in the test's namespace).
    pub resolver_netns: Vec<PathBuf>,
    /// Namespaces where making resolver sockets fails (port 53 taken).
    pub fail_resolver: BTreeSet<PathBuf>,
    /// Drivers of host interfaces (`driver`); others report none.
    pub drivers: BTreeMap<String, String>,
    /// Each container namespace's default route: (interface, gateway).
    pub default_routes: BTreeMap<PathBuf, (String, std::net::Ipv4Addr)>,
    /// The same for IPv6 (dual-stack gateway networks).
    pub default_routes6: BTreeMap<PathBuf, (String, std::net::Ipv6Addr)>,
    /// The host's IPv6 routes (`routes6`).
    pub routes6: Vec<(ipnet::Ipv6Net, String)>,
}

/// The MAC the fake "kernel" gives a container interface: the one asked
/// for, else always the same.
fn fake_mac(asked: Option<[u8; 6]>) -> String {
    asked.map_or_else(
        || "02:00:00:00:00:01".into(),
        |m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        },
    )
}

impl Host for FakeHost {
    fn routes(&mut self) -> Result<Vec<(Ipv4Net, String)>, HostError> {
        Ok(self.routes.clone())
    }

    fn routes6(&mut self) -> Result<Vec<(ipnet::Ipv6Net, String)>, HostError> {
        Ok(self.routes6.clone())
    }

    fn ensure_bridge(&mut self, bridge: &BridgeConfig) -> Result<BridgeLink, HostError> {
        if self.fail_bridges.contains(&bridge.name) {
            return Err(HostError::Other(format!(
                "injected bridge failure for {}",
                bridge.name
            )));
        }
        self.bridges.insert(bridge.name.clone(), bridge.clone());
        let index = self
            .bridges
            .keys()
            .position(|n| *n == bridge.name)
            .unwrap_or(0) as u32;
        Ok(BridgeLink {
            ifindex: 10 + index,
            mac: [0x02, 0xbb, 0, 0, 0, index as u8],
        })
    }

    fn remove_bridge(&mut self, name: &str) -> Result<(), HostError> {
        self.bridges.remove(name);
        Ok(())
    }

    fn add_endpoint(&mut self, ep: &EndpointConfig) -> Result<EndpointLink, HostError> {
        if self.fail_endpoints || self.fail_endpoint_names.contains(&ep.host_ifname) {
            return Err(HostError::Other("injected endpoint failure".into()));
        }
        if !self.bridges.contains_key(&ep.bridge) {
            return Err(HostError::Other(format!("no bridge {}", ep.bridge)));
        }
        if self.endpoints.contains_key(&ep.host_ifname) {
            return Err(HostError::Other(format!("{} exists", ep.host_ifname)));
        }
        self.endpoints.insert(ep.host_ifname.clone(), ep.clone());
        if let Some(gw) = ep.default_gateway {
            self.default_routes
                .insert(ep.netns.clone(), (ep.ifname.clone(), gw.v4));
            if let Some(v6) = gw.v6 {
                self.default_routes6
                    .insert(ep.netns.clone(), (ep.ifname.clone(), v6));
            }
        }
        self.next_ifindex += 1;
        self.ifindexes
            .insert(ep.host_ifname.clone(), 100 + self.next_ifindex);
        Ok(EndpointLink {
            host_ifindex: 100 + self.next_ifindex,
            mac: fake_mac(ep.mac),
        })
    }

    fn remove_endpoint(&mut self, host_ifname: &str) -> Result<(), HostError> {
        self.removals.push((
            crate::datapath::fake::next_seq(),
            format!("veth {host_ifname}"),
        ));
        if let Some(ep) = self.endpoints.remove(host_ifname)
            && self
                .default_routes
                .get(&ep.netns)
                .is_some_and(|(ifname, _)| *ifname == ep.ifname)
        {
            self.default_routes.remove(&ep.netns);
            self.default_routes6.remove(&ep.netns);
        }
        self.ifindexes.remove(host_ifname);
        Ok(())
    }

    fn forget_netns(&mut self, _netns: &Path) {}

    fn driver(&mut self, iface: &str) -> Result<Option<String>, HostError> {
        Ok(self.drivers.get(iface).cloned())
    }

    fn set_default_route(
        &mut self,
        netns: &Path,
        ifname: &str,
        gateway: Option<super::DefaultRoute>,
    ) -> Result<(), HostError> {
        self.default_routes6.remove(netns);
        match gateway {
            Some(gw) => {
                self.default_routes
                    .insert(netns.to_owned(), (ifname.to_owned(), gw.v4));
                if let Some(v6) = gw.v6 {
                    self.default_routes6
                        .insert(netns.to_owned(), (ifname.to_owned(), v6));
                }
            }
            None => {
                self.default_routes.remove(netns);
            }
        }
        Ok(())
    }

    fn ifindex(&mut self, name: &str) -> Result<Option<u32>, HostError> {
        Ok(self
            .endpoints
            .contains_key(name)
            .then(|| self.ifindexes.get(name).copied().unwrap_or(100)))
    }

    fn own_links(&mut self) -> Result<Vec<String>, HostError> {
        if self.fail_dumps {
            return Err(HostError::Other("injected netlink dump failure".into()));
        }
        Ok(self
            .bridges
            .keys()
            .chain(self.endpoints.keys())
            .filter(|n| n.starts_with(super::IFACE_PREFIX))
            .cloned()
            .collect())
    }

    fn reserve_port(&mut self, port: HostPort) -> Result<(), HostError> {
        let clash = self.foreign.iter().any(|f| {
            f.port == port.port
                && f.proto == port.proto
                // IPv6 sockets are bound IPv6-only (ports.rs).
                && f.ip.is_ipv4() == port.ip.is_ipv4()
                && (f.ip == port.ip || f.ip.is_unspecified() || port.ip.is_unspecified())
        });
        let absent = self
            .local_addrs
            .as_ref()
            .is_some_and(|local| !port.ip.is_unspecified() && !local.contains(&port.ip));
        if absent {
            return Err(HostError::NotLocal {
                ip: port.ip,
                port: port.port,
                proto: port.proto,
            });
        }
        if clash {
            return Err(HostError::PortInUse {
                ip: port.ip,
                port: port.port,
                proto: port.proto,
            });
        }
        self.reserved.insert(port);
        Ok(())
    }

    fn reserve_ports(&mut self, ports: &[HostPort]) -> Result<(), HostError> {
        let mut taken = Vec::new();
        for &port in ports {
            let new = !self.reserved.contains(&port);
            if let Err(e) = self.reserve_port(port) {
                for port in taken {
                    self.reserved.remove(&port);
                }
                return Err(e);
            }
            if new {
                taken.push(port);
            }
        }
        Ok(())
    }

    fn release_port(&mut self, port: HostPort) {
        self.reserved.remove(&port);
    }

    /// Any path is a namespace of its own, except under `/nonexistent`.
    fn netns_id(&mut self, path: &Path) -> Result<NetnsId, HostError> {
        use std::hash::{DefaultHasher, Hash as _, Hasher as _};
        if path.starts_with("/nonexistent") {
            return Err(HostError::Netns {
                path: path.to_owned(),
                reason: "No such file or directory (os error 2)".into(),
            });
        }
        if let Some(id) = self.replaced_netns.get(path) {
            return Ok(*id);
        }
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        Ok(NetnsId {
            dev: 1,
            ino: h.finish(),
        })
    }

    /// The host's namespace is the one `/proc/self/ns/net` names.
    fn own_netns(&mut self) -> Result<NetnsId, HostError> {
        self.netns_id(Path::new("/proc/self/ns/net"))
    }

    fn endpoint_link(
        &mut self,
        host_ifname: &str,
        _netns: &Path,
        _ifname: &str,
    ) -> Result<Option<EndpointLink>, HostError> {
        let Some(host_ifindex) = self.ifindex(host_ifname)? else {
            return Ok(None);
        };
        let asked = self.endpoints.get(host_ifname).and_then(|e| e.mac);
        let mac = self
            .kernel_macs
            .get(host_ifname)
            .cloned()
            .unwrap_or_else(|| fake_mac(asked));
        Ok(Some(EndpointLink { host_ifindex, mac }))
    }

    fn interface_addrs(
        &mut self,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<Vec<std::net::IpAddr>>, HostError> {
        Ok(self
            .endpoints
            .values()
            .find(|e| e.netns == netns && e.ifname == ifname)
            .map(|e| {
                let mut addrs = vec![std::net::IpAddr::V4(e.ip)];
                addrs.extend(e.ip6.map(|(ip6, _)| std::net::IpAddr::V6(ip6)));
                addrs
            }))
    }

    fn ephemeral_ports(&mut self) -> (u16, u16, Vec<(u16, u16)>) {
        let (lo, hi) = self.ephemeral.unwrap_or((32768, 60999));
        (lo, hi, Vec::new())
    }

    fn resolver_sockets(
        &mut self,
        netns: &Path,
        program: Option<std::os::fd::OwnedFd>,
    ) -> Result<super::ResolverSockets, HostError> {
        if self.fail_resolver.contains(netns) {
            return Err(HostError::Other(format!(
                "127.0.0.11:53 is taken in {}",
                netns.display()
            )));
        }
        self.resolver_netns.push(netns.to_owned());
        let io = |source| HostError::Io {
            op: "binding a fake resolver socket".into(),
            source,
        };
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(io)?;
        let port = udp.local_addr().map_err(io)?.port();
        // A distinct cookie per namespace path, as the kernel's are.
        let cookie = self.resolver_netns.len() as u64;
        Ok(super::ResolverSockets {
            udp,
            tcp: std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?,
            port,
            cookie,
            // The "link" is the program descriptor itself: dropped with
            // the sockets' record, as a real link is.
            link: program,
            // The fakes' containers live in the test's own namespace.
            netns: super::nssock::own_netns().map_err(io)?,
        })
    }
}
