//! Unit tests of links, DNS settings and the resolver's bookkeeping
//! against the fakes.

use std::net::IpAddr;

use crate::{
    agent::Agent,
    api::{ContainerAttach, ContainerFile, NetworkCreate},
    datapath::fake::FakeDatapath,
    dns::{Resolver, ResolverConfig},
    error::{AgentError, NetError},
    host::fake::FakeHost,
    state::StateStore,
};

type TestAgent = Agent<FakeDatapath, FakeHost>;

fn agent(dir: &tempfile::TempDir) -> TestAgent {
    let store = StateStore::open(dir.path()).unwrap();
    let mut a = Agent::new(store, FakeDatapath::default(), FakeHost::default()).unwrap();
    a.ensure_default_network().unwrap();
    a.network_create(NetworkCreate {
        subnet: Some("10.1.0.0/24".parse().unwrap()),
        ..NetworkCreate::named("front")
    })
    .unwrap();
    a
}

fn attach(name: &str, network: &str, n: usize) -> ContainerAttach {
    ContainerAttach {
        name: Some(name.into()),
        netns: Some(format!("/run/netns/ns{n}").into()),
        network: Some(network.into()),
        ..ContainerAttach::default()
    }
}

fn net_err(e: AgentError) -> NetError {
    match e {
        AgentError::Net(e) => e,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn a_link_on_the_default_bridge_gives_variables_and_a_hosts_entry_that_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(ContainerAttach {
        expose: vec!["5432".into()],
        env: vec!["POSTGRES_DB=app".into(), "PATH=/usr/bin".into()],
        ..attach("db", "bridge", 1)
    })
    .unwrap();
    let db_ip = a.state().containers[0].endpoints()[0].ip;
    a.container_attach(ContainerAttach {
        links: vec!["db:webdb".into()],
        ..attach("web", "bridge", 2)
    })
    .unwrap();
    let env = a.container_file("web", ContainerFile::Env).unwrap();
    assert_eq!(
        env,
        format!(
            "WEBDB_PORT=tcp://{db_ip}:5432\n\
             WEBDB_PORT_5432_TCP=tcp://{db_ip}:5432\n\
             WEBDB_PORT_5432_TCP_ADDR={db_ip}\n\
             WEBDB_PORT_5432_TCP_PORT=5432\n\
             WEBDB_PORT_5432_TCP_PROTO=tcp\n\
             WEBDB_NAME=/web/webdb\n\
             WEBDB_ENV_POSTGRES_DB=app\n"
        )
    );
    let db_id = a.state().containers[0].short_id().to_owned();
    let hosts = a.container_file("web", ContainerFile::Hosts).unwrap();
    assert!(
        hosts.ends_with(&format!("{db_ip}\twebdb {db_id} db\n")),
        "{hosts}"
    );
    // db comes back with another address: the entry follows (a new
    // container, a new hostname), the variables do not (as Docker's).
    a.container_detach("db").unwrap();
    let hosts_gone = a.container_file("web", ContainerFile::Hosts).unwrap();
    assert!(
        hosts_gone.ends_with(&format!("{db_ip}\twebdb db\n")),
        "{hosts_gone}"
    );
    a.container_attach(attach("filler", "bridge", 3)).unwrap();
    a.container_attach(attach("db", "bridge", 4)).unwrap();
    let db = a
        .state()
        .containers
        .iter()
        .find(|c| c.name == "db")
        .unwrap();
    let (new_ip, new_id) = (db.endpoints()[0].ip, db.short_id().to_owned());
    assert_ne!(new_ip, db_ip);
    let hosts = a.container_file("web", ContainerFile::Hosts).unwrap();
    assert!(
        hosts.ends_with(&format!("{new_ip}\twebdb {new_id} db\n")),
        "{hosts}"
    );
    assert_eq!(a.container_file("web", ContainerFile::Env).unwrap(), env);
}

#[test]
fn links_need_an_attached_container_on_the_same_network() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("db", "front", 1)).unwrap();
    let e = a
        .container_attach(ContainerAttach {
            links: vec!["db".into()],
            ..attach("web", "bridge", 2)
        })
        .unwrap_err();
    assert_eq!(
        net_err(e).to_string(),
        "Cannot link to /db, as it does not belong to the default network"
    );
    let e = a
        .container_attach(ContainerAttach {
            links: vec!["nosuch:x".into()],
            ..attach("web", "bridge", 2)
        })
        .unwrap_err();
    assert_eq!(net_err(e), NetError::NoSuchContainer("nosuch".into()));
    assert!(
        a.state().containers.iter().all(|c| c.name != "web"),
        "nothing changed"
    );
    // Joined and host containers: Docker's conflicts.
    let e = a
        .container_attach(ContainerAttach {
            links: vec!["db".into()],
            netns: None,
            ..attach("side", "container:db", 3)
        })
        .unwrap_err();
    assert_eq!(net_err(e), NetError::JoinedLinks);
    let e = a
        .container_attach(ContainerAttach {
            dns: vec!["10.0.0.1".parse().unwrap()],
            netns: None,
            ..attach("side", "container:db", 3)
        })
        .unwrap_err();
    assert_eq!(
        net_err(e).to_string(),
        "conflicting options: dns and the network mode"
    );
    let e = a
        .container_attach(ContainerAttach {
            links: vec!["db".into()],
            netns: None,
            ..attach("hh", "host", 4)
        })
        .unwrap_err();
    assert_eq!(net_err(e), NetError::HostLinks);
    // Bad values name themselves.
    for (req, want) in [
        (
            ContainerAttach {
                env: vec!["=x".into()],
                ..attach("vv", "front", 5)
            },
            NetError::InvalidEnv("=x".into()),
        ),
        (
            ContainerAttach {
                dns_search: vec!["bad domain".into()],
                ..attach("vv", "front", 5)
            },
            NetError::InvalidDnsSearch("bad domain".into()),
        ),
        (
            ContainerAttach {
                dns_options: vec!["a b".into()],
                ..attach("vv", "front", 5)
            },
            NetError::InvalidDnsOption("a b".into()),
        ),
        (
            ContainerAttach {
                links: vec!["a:b:c".into()],
                ..attach("vv", "front", 5)
            },
            NetError::InvalidLink("a:b:c".into()),
        ),
    ] {
        assert_eq!(net_err(a.container_attach(req).unwrap_err()), want);
    }
}

#[test]
fn icc_false_on_the_default_bridge_opens_link_holes_for_exposed_ports() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.set_default_icc(false).unwrap();
    a.container_attach(ContainerAttach {
        expose: vec!["80".into(), "53/udp".into()],
        ..attach("db", "bridge", 1)
    })
    .unwrap();
    a.container_attach(ContainerAttach {
        links: vec!["db".into()],
        ..attach("web", "bridge", 2)
    })
    .unwrap();
    let holes = &a.datapath.host_maps.link_holes;
    assert_eq!(holes.len(), 4, "two ports, both ways: {holes:?}");
    a.set_default_icc(true).unwrap();
    assert!(
        a.datapath.host_maps.link_holes.is_empty(),
        "icc on: no holes needed"
    );
    a.set_default_icc(false).unwrap();
    assert_eq!(a.datapath.host_maps.link_holes.len(), 4);
    a.container_detach("web").unwrap();
    assert!(a.datapath.host_maps.link_holes.is_empty());
}

#[test]
fn a_link_on_a_user_defined_network_is_an_alias_with_no_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("db", "front", 1)).unwrap();
    a.container_attach(ContainerAttach {
        links: vec!["db:store".into()],
        ..attach("web", "front", 2)
    })
    .unwrap();
    assert_eq!(a.container_file("web", ContainerFile::Env).unwrap(), "");
    let dir = crate::dns::directory::Directory::build(a.state(), &[]);
    let web = dir.askers().find(|x| x.name == "web").unwrap();
    let db_ip = a.state().containers[0].endpoints()[0].ip;
    assert_eq!(dir.resolve(web, "store").unwrap().v4, [db_ip]);
}

#[test]
fn the_resolver_opens_sockets_for_askers_and_writes_and_removes_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(attach("web", "front", 1)).unwrap();
    a.container_attach(ContainerAttach {
        dns: vec!["10.9.9.9".parse::<IpAddr>().unwrap()],
        dns_search: vec!["corp.example".into()],
        dns_options: vec!["ndots:2".into()],
        ..attach("api", "front", 2)
    })
    .unwrap();
    a.container_attach(attach("plain", "bridge", 3)).unwrap();
    a.host.fail_resolver.insert("/run/netns/ns4".into());
    a.container_attach(attach("taken", "front", 4)).unwrap();
    let config = ResolverConfig {
        host: crate::dns::files::HostResolv::parse(
            std::path::Path::new("/etc/resolv.conf"),
            "nameserver 127.0.0.53\nsearch lan\noptions edns0\n",
        ),
        upstreams: Vec::new(),
        etc_netns: etc.path().to_owned(),
    };
    a.set_resolver(Resolver::start(config).unwrap());
    let mut opened = a.host.resolver_netns.clone();
    opened.sort();
    assert_eq!(
        opened,
        ["/run/netns/ns1", "/run/netns/ns2"].map(std::path::PathBuf::from)
    );
    let read = |ns: &str, file: &str| std::fs::read_to_string(etc.path().join(ns).join(file));
    let web = read("ns1", "resolv.conf").unwrap();
    assert!(
        web.contains("nameserver 127.0.0.11\nsearch lan\noptions ndots:0\n"),
        "{web}"
    );
    assert!(web.contains("# ExtServers: [host(127.0.0.53)]"), "{web}");
    let api = read("ns2", "resolv.conf").unwrap();
    assert!(
        api.contains("search corp.example\noptions ndots:2\n"),
        "{api}"
    );
    assert!(api.contains("# ExtServers: [10.9.9.9]"), "{api}");
    assert!(api.contains("# Option ndots from: user"), "{api}");
    // The default bridge: the host's servers but loopback ones: Docker's
    // fallback.
    let plain = read("ns3", "resolv.conf").unwrap();
    assert!(
        plain.contains("nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\noptions edns0\n"),
        "{plain}"
    );
    assert!(read("ns3", "hosts").unwrap().contains("\tlocalhost\n"));
    // A file netagent did not write is left alone.
    std::fs::write(etc.path().join("ns4/hosts"), "mine\n").ok();
    // Detach: sockets closed (not reopened), files gone.
    a.container_detach("web").unwrap();
    assert!(read("ns1", "resolv.conf").is_err() && !etc.path().join("ns1").exists());
    assert_eq!(a.host.resolver_netns.len(), 2, "no socket made again");
    // Re-attached: made again.
    a.container_attach(attach("web", "front", 1)).unwrap();
    assert_eq!(a.host.resolver_netns.len(), 3);
}

#[test]
fn a_namespace_path_that_names_another_namespace_gets_no_resolver_and_loses_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.datapath.endpoints.resolver_program = true;
    a.container_attach(attach("web", "front", 1)).unwrap();
    a.container_attach(attach("api", "front", 2)).unwrap();
    a.set_resolver(
        Resolver::start(ResolverConfig {
            etc_netns: etc.path().to_owned(),
            ..ResolverConfig::default()
        })
        .unwrap(),
    );
    assert_eq!(a.host.resolver_netns.len(), 2);
    // The loopback program's ports, one per namespace.
    assert_eq!(a.datapath.endpoints.resolver_ports.len(), 2);
    // api's path now names another namespace (its runtime deleted it and
    // the path was reused): its resolver closes, and none is made there.
    let other = crate::host::NetnsId { dev: 9, ino: 9 };
    a.host.replaced_netns.insert("/run/netns/ns2".into(), other);
    a.close_orphan_resolvers();
    assert_eq!(a.datapath.endpoints.resolver_ports.len(), 1);
    a.container_attach(attach("late", "front", 3)).unwrap();
    let mut opened: Vec<_> = a
        .host
        .resolver_netns
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    opened.sort();
    assert_eq!(
        opened,
        ["/run/netns/ns1", "/run/netns/ns2", "/run/netns/ns3"],
        "ns2 not again"
    );
    assert_eq!(a.datapath.endpoints.resolver_ports.len(), 2);
}

#[test]
fn a_hostname_is_a_name_and_the_hosts_files_own_line_as_dockers() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&dir);
    a.container_attach(ContainerAttach {
        hostname: Some("db.example.com".into()),
        ..attach("store", "front", 1)
    })
    .unwrap();
    a.container_attach(ContainerAttach {
        links: vec!["store".into()],
        ..attach("web", "front", 2)
    })
    .unwrap();
    let ip = a.state().containers[0].endpoints()[0].ip;
    let hosts = a.container_file("store", ContainerFile::Hosts).unwrap();
    assert!(
        hosts.ends_with(&format!("{ip}\tdb.example.com db store\n")),
        "FQDN, short, name: {hosts}"
    );
    let directory = crate::dns::directory::Directory::build(a.state(), &[]);
    let web = directory.askers().find(|x| x.name == "web").unwrap();
    assert_eq!(directory.resolve(web, "DB.example.com").unwrap().v4, [ip]);
    // Without one, the short ID stands in (Docker's default hostname).
    let web_c = a
        .state()
        .containers
        .iter()
        .find(|c| c.name == "web")
        .unwrap();
    let own = format!("{}\t{} web\n", web_c.endpoints()[0].ip, web_c.short_id());
    assert!(
        a.container_file("web", ContainerFile::Hosts)
            .unwrap()
            .contains(&own)
    );
    // Bad, or with a joined stack: refused.
    let e = a
        .container_attach(ContainerAttach {
            hostname: Some("bad host".into()),
            ..attach("x1", "front", 3)
        })
        .unwrap_err();
    assert_eq!(net_err(e), NetError::InvalidHostname("bad host".into()));
    let e = a
        .container_attach(ContainerAttach {
            hostname: Some("side".into()),
            netns: None,
            ..attach("x2", "container:web", 4)
        })
        .unwrap_err();
    assert_eq!(
        net_err(e).to_string(),
        "conflicting options: hostname and the network mode"
    );
}
