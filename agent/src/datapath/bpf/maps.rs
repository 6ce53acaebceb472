//! The map side of [`BpfDatapath`]: the narrow datapath traits over the
//! pinned maps (and the endpoint program's links).

use std::{
    ffi::CString,
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
};

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuValues},
    programs::{SchedClassifier, TcAttachType, tc::SchedClassifierLink},
};
use datapath_common::{
    DatapathConfig, EndpointAddr, EndpointIface, EndpointIface6, Event, LinkHole, LocalAddr,
    MasqAddr, MasqAddr6, OpenPort, PubKey, PubKey6, PubStats, PubValue, PubValue6,
    prog_names::TC_FROM_CONTAINER,
};

use super::{BpfDatapath, attach_pinned, attach_tcx, batch, io_err, map_err, prog_err, program};
use crate::datapath::{DatapathError, EndpointMaps, EndpointPrograms, HostMaps, PublicationMaps};

fn sum_per_cpu<T: aya::Pod>(values: &PerCpuValues<T>, mut add: impl FnMut(&T)) {
    values.iter().for_each(&mut add);
}

impl PublicationMaps for BpfDatapath {
    fn publications(&self) -> Result<Vec<(PubKey, PubValue)>, DatapathError> {
        self.publications
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading the publication map"))
    }

    fn upsert_publication(&mut self, key: &PubKey, value: &PubValue) -> Result<(), DatapathError> {
        self.publications
            .insert(key, value, 0)
            .map_err(map_err("writing the publication map"))
    }

    fn remove_publication(&mut self, key: &PubKey) -> Result<(), DatapathError> {
        remove_key(
            &mut self.publications,
            key,
            "removing from the publication map",
        )
    }

    fn insert_publications(&mut self, entries: &[(PubKey, PubValue)]) -> Result<(), DatapathError> {
        let (keys, values): (Vec<PubKey>, Vec<PubValue>) = entries.iter().copied().unzip();
        let fd = self.publications_batch.fd().as_fd();
        batch::update(fd, &keys, &values).or_else(|partial| {
            // All or none: take back what the batch wrote before it failed.
            for key in &keys[..partial.done] {
                self.remove_publication(key)?;
            }
            let failed = keys.get(partial.done).map(|k| {
                let ip = std::net::Ipv4Addr::from(k.addr_be.to_ne_bytes());
                format!(" at {ip}:{}/{}", u16::from_be(k.port_be), k.proto)
            });
            Err(io_err(format!(
                "writing the publication map{}",
                failed.unwrap_or_default()
            ))(partial.source))
        })
    }

    fn reset_stats(&mut self, slots: &[u32]) -> Result<(), DatapathError> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(op, source)| io_err(op)(source))?
            .get() as usize;
        // The kernel's layout of a per-CPU batch: every key's value for
        // each possible CPU, one after the other (PubStats is 8-aligned).
        let zeroes = vec![PubStats::default(); slots.len() * cpus];
        batch::update(self.pub_stats_batch.fd().as_fd(), slots, &zeroes)
            .map_err(|partial| io_err("resetting publication counters")(partial.source))
    }

    fn stats_slots(&self) -> u32 {
        self.pub_stats.len()
    }

    fn stats(&self, slot: u32) -> Result<PubStats, DatapathError> {
        let values = self
            .pub_stats
            .get(&slot, 0)
            .map_err(map_err("reading publication counters"))?;
        let mut total = PubStats::default();
        sum_per_cpu(&values, |s| {
            total.fwd_packets += s.fwd_packets;
            total.fwd_bytes += s.fwd_bytes;
            total.rev_packets += s.rev_packets;
            total.rev_bytes += s.rev_bytes;
        });
        Ok(total)
    }

    fn events(&self) -> Result<Vec<(Event, u64)>, DatapathError> {
        Event::ALL
            .iter()
            .filter(|e| !e.is_retired())
            .map(|&event| {
                let values = self
                    .events
                    .get(&(event as u32), 0)
                    .map_err(map_err("reading event counters"))?;
                let mut total = 0;
                sum_per_cpu(&values, |v| total += v);
                Ok((event, total))
            })
            .collect()
    }
}

impl HostMaps for BpfDatapath {
    fn set_local_addrs(&mut self, addrs: &[(IpAddr, u32)]) -> Result<(), DatapathError> {
        let mut v4 = std::collections::HashMap::new();
        let mut v6 = std::collections::HashMap::new();
        for (ip, ifindex) in addrs {
            let value = LocalAddr { ifindex: *ifindex };
            match ip {
                IpAddr::V4(ip) => v4.insert(u32::from_ne_bytes(ip.octets()), value),
                IpAddr::V6(ip) => v6.insert(datapath_common::ipv6_be(*ip), value),
            };
        }
        replace_all(&mut self.local_addrs, v4, "the local-address map")?;
        replace_all(&mut self.local_addrs6, v6, "the IPv6 local-address map")
    }

    fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError> {
        self.config
            .set(0, config, 0)
            .map_err(map_err("writing the datapath config"))
    }

    fn set_open_ports(&mut self, ports: &[OpenPort]) -> Result<(), DatapathError> {
        let wanted = ports.iter().map(|p| (*p, 1u32)).collect();
        replace_all(&mut self.open_ports, wanted, "the open-port map")
    }

    fn set_link_holes(&mut self, holes: &[LinkHole]) -> Result<(), DatapathError> {
        let wanted = holes.iter().map(|h| (*h, 1u32)).collect();
        replace_all(&mut self.link_holes, wanted, "the link-hole map")
    }

    fn set_publications6(&mut self, entries: &[(PubKey6, PubValue6)]) -> Result<(), DatapathError> {
        let wanted = entries.iter().copied().collect();
        replace_all(&mut self.publications6, wanted, "the IPv6 publication map")
    }

    fn set_masq_addrs(&mut self, addrs: &[(u32, IpAddr)]) -> Result<(), DatapathError> {
        let mut v4 = std::collections::HashMap::new();
        let mut v6 = std::collections::HashMap::new();
        for (ifindex, ip) in addrs {
            match ip {
                IpAddr::V4(ip) => {
                    let addr_be = u32::from_ne_bytes(ip.octets());
                    v4.insert(*ifindex, MasqAddr { addr_be });
                }
                IpAddr::V6(ip) => {
                    let addr_be = datapath_common::ipv6_be(*ip);
                    v6.insert(*ifindex, MasqAddr6 { addr_be });
                }
            }
        }
        replace_all(&mut self.masq_addrs, v4, "the masquerade-address map")?;
        replace_all(&mut self.masq_addrs6, v6, "the IPv6 masquerade-address map")
    }
}

impl EndpointMaps for BpfDatapath {
    fn endpoint_ifaces(&self) -> Result<Vec<(u32, EndpointIface)>, DatapathError> {
        self.endpoint_ifaces
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading the endpoint-interface map"))
    }

    fn set_endpoint_iface(
        &mut self,
        ifindex: u32,
        net: &EndpointIface,
    ) -> Result<(), DatapathError> {
        self.endpoint_ifaces
            .insert(&ifindex, net, 0)
            .map_err(map_err("writing the endpoint-interface map"))
    }

    fn remove_endpoint_iface(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        remove_key(
            &mut self.endpoint_ifaces,
            &ifindex,
            "removing from the endpoint-interface map",
        )
    }

    fn endpoint_addrs(&self) -> Result<Vec<(Ipv4Addr, EndpointAddr)>, DatapathError> {
        self.endpoint_addrs
            .iter()
            .map(|r| r.map(|(k, v)| (Ipv4Addr::from(k.to_ne_bytes()), v)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading the endpoint-address map"))
    }

    fn set_endpoint_addr(
        &mut self,
        addr: Ipv4Addr,
        net: &EndpointAddr,
    ) -> Result<(), DatapathError> {
        self.endpoint_addrs
            .insert(&u32::from_ne_bytes(addr.octets()), net, 0)
            .map_err(map_err("writing the endpoint-address map"))
    }

    fn remove_endpoint_addr(&mut self, addr: Ipv4Addr) -> Result<(), DatapathError> {
        remove_key(
            &mut self.endpoint_addrs,
            &u32::from_ne_bytes(addr.octets()),
            "removing from the endpoint-address map",
        )
    }

    fn endpoint_ifaces6(&self) -> Result<Vec<u32>, DatapathError> {
        self.endpoint_ifaces6
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading the IPv6 endpoint-interface map"))
    }

    fn set_endpoint_iface6(
        &mut self,
        ifindex: u32,
        iface: &EndpointIface6,
    ) -> Result<(), DatapathError> {
        self.endpoint_ifaces6
            .insert(&ifindex, iface, 0)
            .map_err(map_err("writing the IPv6 endpoint-interface map"))
    }

    fn remove_endpoint_iface6(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        remove_key(
            &mut self.endpoint_ifaces6,
            &ifindex,
            "removing from the IPv6 endpoint-interface map",
        )
    }

    fn endpoint_addrs6(&self) -> Result<Vec<Ipv6Addr>, DatapathError> {
        self.endpoint_addrs6
            .keys()
            .map(|k| k.map(datapath_common::ipv6_from_be))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading the IPv6 endpoint-address map"))
    }

    fn set_endpoint_addr6(
        &mut self,
        addr: Ipv6Addr,
        endpoint: &EndpointAddr,
    ) -> Result<(), DatapathError> {
        self.endpoint_addrs6
            .insert(&datapath_common::ipv6_be(addr), endpoint, 0)
            .map_err(map_err("writing the IPv6 endpoint-address map"))
    }

    fn remove_endpoint_addr6(&mut self, addr: Ipv6Addr) -> Result<(), DatapathError> {
        remove_key(
            &mut self.endpoint_addrs6,
            &datapath_common::ipv6_be(addr),
            "removing from the IPv6 endpoint-address map",
        )
    }
}

impl EndpointPrograms for BpfDatapath {
    fn resolver_program(&self) -> Option<std::os::fd::OwnedFd> {
        self.dns_program.as_ref().and_then(|fd| fd.try_clone().ok())
    }

    fn set_resolver_ports(&mut self, ports: &[(u64, u16)]) -> Result<(), DatapathError> {
        let wanted = ports
            .iter()
            .map(|&(cookie, port)| (cookie, u32::from(port.to_be())))
            .collect();
        replace_all(&mut self.dns_ports, wanted, "the resolver-port map")
    }

    fn attach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        let c_iface = CString::new(host_ifname)
            .map_err(|_| DatapathError::Other(format!("bad interface name {host_ifname:?}")))?;
        let dir = self.pins.endpoint_links();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let tc: &mut SchedClassifier = program(&mut self.ebpf, TC_FROM_CONTAINER)?;
        let link = attach_pinned(
            &dir.join(host_ifname),
            tc,
            |tc, fd| {
                let link = SchedClassifierLink::try_from(fd)
                    .map_err(|e| DatapathError::Other(e.to_string()))?;
                tc.attach_to_link(link).map_err(prog_err(format!(
                    "replacing {TC_FROM_CONTAINER} on {host_ifname}"
                )))?;
                Ok(())
            },
            |tc| {
                attach_tcx(
                    tc,
                    TC_FROM_CONTAINER,
                    host_ifname,
                    &c_iface,
                    TcAttachType::Ingress,
                )
            },
        )?;
        self.endpoint_links.insert(host_ifname.to_owned(), link);
        Ok(())
    }

    fn detach_endpoint(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        let pin = self.pins.endpoint_links().join(host_ifname);
        match fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("unpinning {}", pin.display()))(e)),
        }
        // Our own descriptor on the link would keep it attached: drop it.
        self.endpoint_links.remove(host_ifname);
        Ok(())
    }

    fn attached_endpoints(&self) -> Result<Vec<String>, DatapathError> {
        let dir = self.pins.endpoint_links();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        };
        entries
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io_err("reading endpoint link pins"))
            })
            .collect()
    }
}

/// Makes a hash map hold exactly `wanted`: stale keys removed, the rest
/// written (a map the agent alone writes, kept in step with netlink).
fn replace_all<K, V>(
    map: &mut HashMap<MapData, K, V>,
    wanted: std::collections::HashMap<K, V>,
    what: &'static str,
) -> Result<(), DatapathError>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod,
{
    let present = map
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err(format!("reading {what}")))?;
    for key in present.iter().filter(|k| !wanted.contains_key(k)) {
        remove_key(map, key, format!("pruning {what}"))?;
    }
    for (key, value) in &wanted {
        map.insert(key, value, 0)
            .map_err(map_err(format!("writing {what}")))?;
    }
    Ok(())
}

/// Removes `key` from a hash map; an absent key is not an error.
fn remove_key<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    op: impl Into<String>,
) -> Result<(), DatapathError> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(map_err(op)(e)),
    }
}
