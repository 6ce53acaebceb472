//! The real [`Datapath`]: the embedded eBPF object, loaded with its maps and
//! program links pinned under a bpffs directory.
//!
//! Pin layout under `<bpffs>` (default `/sys/fs/bpf/netagent`):
//! - `maps/<MAP_NAME>`: every map of `datapath_common::map_names`;
//! - `links/<iface>/{xdp,tc_ingress,tc_egress}`: the program links on
//!   served interfaces;
//! - `eplinks/<host_ifname>`: the isolation program's link on a
//!   container's host-side interface.
//!
//! Pins are what let the datapath outlive the agent: a restarted agent
//! reopens the maps (keeping publications, counters and conntrack) and
//! swaps its freshly loaded programs into the existing links with
//! `bpf_link_update`, which is atomic, so no packet sees a gap.

use std::{
    ffi::{CStr, CString},
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{
        CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttach},
        xdp::XdpLink,
    },
};
use datapath_common::{
    DatapathConfig, EndpointAddr, EndpointIface, EndpointIface6, Ipv6Be, LinkHole, LocalAddr,
    MasqAddr, MasqAddr6, OpenPort, PubKey, PubKey6, PubStats, PubValue, PubValue6, SockConfig,
    map_names::{
        CONFIG, CT_SYN, CT_SYN6, CT_TCP, CT_TCP6, CT_UDP, CT_UDP6, DNS_PORTS, ENDPOINT_ADDRS,
        ENDPOINT_ADDRS6, ENDPOINT_IFACES, ENDPOINT_IFACES6, EVENTS, FRAGMENTS, FRAGMENTS6, HAIRPIN,
        HAIRPIN6, LINK_HOLES, LOCAL_ADDRS, LOCAL_ADDRS6, MASQ_ADDRS, MASQ_ADDRS6, OPEN_PORTS,
        PUB_STATS, PUBLICATIONS, PUBLICATIONS6, RETIRED, SHARES, SHARES6, SNAT, SNAT6, SOCK_CONFIG,
        SOCK_REV, SOCK_REV6,
    },
    prog_names::{SOCKET_HOOKS, TC_DNS, TC_EGRESS, TC_FROM_CONTAINER, TC_INGRESS, XDP_INGRESS},
};
use tracing::{info, warn};

use super::{DatapathError, ServedInterfaces};

/// The eBPF object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netagent-datapath"));

/// Every map, for pinning.
pub const MAP_NAMES: [&str; 33] = [
    PUBLICATIONS,
    LINK_HOLES,
    DNS_PORTS,
    CT_TCP,
    CT_SYN,
    CT_UDP,
    LOCAL_ADDRS,
    PUB_STATS,
    EVENTS,
    ENDPOINT_IFACES,
    ENDPOINT_ADDRS,
    SNAT,
    MASQ_ADDRS,
    FRAGMENTS,
    SHARES,
    OPEN_PORTS,
    CONFIG,
    SOCK_REV,
    SOCK_CONFIG,
    HAIRPIN,
    SOCK_REV6,
    LOCAL_ADDRS6,
    ENDPOINT_IFACES6,
    ENDPOINT_ADDRS6,
    PUBLICATIONS6,
    CT_TCP6,
    CT_SYN6,
    CT_UDP6,
    SNAT6,
    SHARES6,
    MASQ_ADDRS6,
    FRAGMENTS6,
    HAIRPIN6,
];

pub use super::XdpAttachMode;

mod batch;
mod maps;
mod sizing;
mod sock_hooks;

impl XdpAttachMode {
    /// The link's pin name; a mode change re-attaches instead of updating.
    const fn pin_name(self) -> Option<&'static str> {
        match self {
            XdpAttachMode::Native => Some("xdp"),
            XdpAttachMode::Generic => Some("xdp_generic"),
            // `Auto` is resolved per interface before attaching.
            XdpAttachMode::Off | XdpAttachMode::Auto => None,
        }
    }
}

/// Link pin names under `links/<iface>/`.
const XDP_PIN_NAMES: [&str; 2] = ["xdp", "xdp_generic"];
const LINK_TC_INGRESS: &str = "tc_ingress";
const LINK_TC_EGRESS: &str = "tc_egress";

fn map_err(op: impl Into<String>) -> impl FnOnce(MapError) -> DatapathError {
    let op = op.into();
    move |source| DatapathError::Map {
        op,
        source: Box::new(source),
    }
}

fn prog_err(op: impl Into<String>) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    let op = op.into();
    move |source| DatapathError::Program {
        op,
        source: Box::new(source),
    }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> DatapathError {
    let op = op.into();
    move |source| DatapathError::Io { op, source }
}

/// Paths of the pins under one bpffs directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    /// Where endpoint (container interface) links are pinned.
    pub fn endpoint_links(&self) -> PathBuf {
        self.root.join("eplinks")
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    /// Where the socket hooks' links are pinned, by cgroup id.
    pub fn sock_links(&self) -> PathBuf {
        self.root.join("sockhooks")
    }

    fn link(&self, iface: &str, which: &str) -> PathBuf {
        self.links().join(iface).join(which)
    }
}

/// The loaded datapath. Dropping it closes the agent's descriptors only:
/// pinned maps and links stay, and forwarding goes on.
pub struct BpfDatapath {
    ebpf: Ebpf,
    pins: PinDir,
    publications: HashMap<MapData, PubKey, PubValue>,
    /// The publication map and the counter array opened a second time,
    /// for the batched writes aya does not offer (`batch`).
    publications_batch: MapData,
    pub_stats_batch: MapData,
    local_addrs: HashMap<MapData, u32, LocalAddr>,
    local_addrs6: HashMap<MapData, Ipv6Be, LocalAddr>,
    pub_stats: PerCpuArray<MapData, PubStats>,
    events: PerCpuArray<MapData, u64>,
    endpoint_ifaces: HashMap<MapData, u32, EndpointIface>,
    endpoint_addrs: HashMap<MapData, u32, EndpointAddr>,
    endpoint_ifaces6: HashMap<MapData, u32, EndpointIface6>,
    publications6: HashMap<MapData, PubKey6, PubValue6>,
    endpoint_addrs6: HashMap<MapData, Ipv6Be, EndpointAddr>,
    masq_addrs: HashMap<MapData, u32, MasqAddr>,
    masq_addrs6: HashMap<MapData, u32, MasqAddr6>,
    open_ports: HashMap<MapData, OpenPort, u32>,
    link_holes: HashMap<MapData, LinkHole, u32>,
    pub(crate) dns_ports: HashMap<MapData, u64, u32>,
    /// The resolver's loopback program, loaded (`None`: refused here).
    pub(crate) dns_program: Option<std::os::fd::OwnedFd>,
    config: Array<MapData, DatapathConfig>,
    sock_config: Array<MapData, SockConfig>,
    /// The cgroup the socket hooks are attached to.
    sock_cgroup: Option<PathBuf>,
    /// Held so their descriptors stay open while the agent runs.
    links: Vec<PinnedLink>,
    /// The same for endpoint links, by host-side interface name, so a
    /// detach can let go of the descriptor too.
    endpoint_links: std::collections::HashMap<String, PinnedLink>,
}

impl BpfDatapath {
    /// Loads the programs, reusing the maps pinned under `pins` or creating
    /// and pinning them on first start.
    pub fn load(pins: PinDir) -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::Other(
                "this netagent was built with AYA_BUILD_SKIP=1 and carries no eBPF object".into(),
            ));
        }
        ensure_bpffs(pins.root())?;
        fs::create_dir_all(pins.maps()).map_err(io_err(format!(
            "creating pin directory {}",
            pins.maps().display()
        )))?;
        remove_retired_pins(&pins)?;
        let map_paths: Vec<(&str, PathBuf)> = MAP_NAMES.iter().map(|&n| (n, pins.map(n))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        // The counter array and the flow tables, sized for this host.
        sizing::apply(&mut loader, &pins)?;
        let mut ebpf = loader.load(OBJECT).map_err(|source| DatapathError::Load {
            op: "loading the eBPF object".into(),
            source: Box::new(source),
        })?;
        program::<Xdp>(&mut ebpf, XDP_INGRESS)?
            .load()
            .map_err(prog_err(format!(
                "loading program {XDP_INGRESS} (verifier)"
            )))?;
        for name in [TC_INGRESS, TC_EGRESS, TC_FROM_CONTAINER] {
            program::<SchedClassifier>(&mut ebpf, name)?
                .load()
                .map_err(prog_err(format!("loading program {name} (verifier)")))?;
        }
        // Optional: a kernel without bpf_get_netns_cookie for TC programs
        // refuses it, and the resolver binds 127.0.0.11:53 itself.
        let dns_program = match program::<SchedClassifier>(&mut ebpf, TC_DNS)?.load() {
            Ok(()) => program::<SchedClassifier>(&mut ebpf, TC_DNS)?
                .fd()
                .ok()
                .and_then(|fd| std::os::fd::AsFd::as_fd(fd).try_clone_to_owned().ok()),
            Err(e) => {
                warn!(error = %e, "the resolver's loopback program was refused: containers' resolvers bind 127.0.0.11:53 themselves");
                None
            }
        };
        for name in SOCKET_HOOKS {
            program::<CgroupSockAddr>(&mut ebpf, name)?
                .load()
                .map_err(prog_err(format!("loading program {name} (verifier)")))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| DatapathError::Other(format!("map {name} missing from object")))
        };
        let publications = HashMap::try_from(take(PUBLICATIONS)?).map_err(map_err(PUBLICATIONS))?;
        let local_addrs = HashMap::try_from(take(LOCAL_ADDRS)?).map_err(map_err(LOCAL_ADDRS))?;
        let local_addrs6 = HashMap::try_from(take(LOCAL_ADDRS6)?).map_err(map_err(LOCAL_ADDRS6))?;
        let pub_stats = PerCpuArray::try_from(take(PUB_STATS)?).map_err(map_err(PUB_STATS))?;
        // Both are pinned by now (the loader pins every map it creates).
        let reopen = |name: &str| {
            let path = pins.map(name);
            MapData::from_pin(&path).map_err(map_err(format!("reopening {}", path.display())))
        };
        let publications_batch = reopen(PUBLICATIONS)?;
        let pub_stats_batch = reopen(PUB_STATS)?;
        let events = PerCpuArray::try_from(take(EVENTS)?).map_err(map_err(EVENTS))?;
        let endpoint_ifaces =
            HashMap::try_from(take(ENDPOINT_IFACES)?).map_err(map_err(ENDPOINT_IFACES))?;
        let endpoint_addrs =
            HashMap::try_from(take(ENDPOINT_ADDRS)?).map_err(map_err(ENDPOINT_ADDRS))?;
        let endpoint_ifaces6 =
            HashMap::try_from(take(ENDPOINT_IFACES6)?).map_err(map_err(ENDPOINT_IFACES6))?;
        let publications6 =
            HashMap::try_from(take(PUBLICATIONS6)?).map_err(map_err(PUBLICATIONS6))?;
        let endpoint_addrs6 =
            HashMap::try_from(take(ENDPOINT_ADDRS6)?).map_err(map_err(ENDPOINT_ADDRS6))?;
        let masq_addrs = HashMap::try_from(take(MASQ_ADDRS)?).map_err(map_err(MASQ_ADDRS))?;
        let masq_addrs6 = HashMap::try_from(take(MASQ_ADDRS6)?).map_err(map_err(MASQ_ADDRS6))?;
        let open_ports = HashMap::try_from(take(OPEN_PORTS)?).map_err(map_err(OPEN_PORTS))?;
        let link_holes = HashMap::try_from(take(LINK_HOLES)?).map_err(map_err(LINK_HOLES))?;
        let dns_ports = HashMap::try_from(take(DNS_PORTS)?).map_err(map_err(DNS_PORTS))?;
        let config = Array::try_from(take(CONFIG)?).map_err(map_err(CONFIG))?;
        let sock_config = Array::try_from(take(SOCK_CONFIG)?).map_err(map_err(SOCK_CONFIG))?;
        Ok(Self {
            ebpf,
            pins,
            publications,
            publications_batch,
            pub_stats_batch,
            local_addrs,
            local_addrs6,
            pub_stats,
            events,
            endpoint_ifaces,
            endpoint_addrs,
            endpoint_ifaces6,
            publications6,
            endpoint_addrs6,
            masq_addrs,
            masq_addrs6,
            open_ports,
            link_holes,
            dns_ports,
            dns_program,
            config,
            sock_config,
            sock_cgroup: None,
            links: Vec::new(),
            endpoint_links: std::collections::HashMap::new(),
        })
    }

    /// Attaches XDP and both TC programs to `iface` (in the calling
    /// thread's network namespace). Existing pinned links are updated in
    /// place; defunct ones (their interface was deleted) are replaced.
    fn attach(&mut self, iface: &str, mode: XdpAttachMode) -> Result<(), DatapathError> {
        let c_iface = CString::new(iface)
            .map_err(|_| DatapathError::Other(format!("bad interface name {iface:?}")))?;
        let c_iface = c_iface.as_c_str();
        let dir = self.pins.links().join(iface);
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;

        // A link attached in another mode (or XDP now off) goes first.
        for stale in XDP_PIN_NAMES
            .into_iter()
            .filter(|&n| Some(n) != mode.pin_name())
        {
            match fs::remove_file(dir.join(stale)) {
                Ok(()) => info!(iface, link = stale, "XDP mode changed; old link detached"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("unpinning {stale} on {iface}"))(e)),
            }
        }
        if let Some(pin) = mode.pin_name() {
            let xdp: &mut Xdp = program(&mut self.ebpf, XDP_INGRESS)?;
            let link = attach_pinned(
                &dir.join(pin),
                xdp,
                |xdp, fd| {
                    let link =
                        XdpLink::try_from(fd).map_err(|e| DatapathError::Other(e.to_string()))?;
                    xdp.attach_to_link(link)
                        .map_err(prog_err(format!("replacing XDP program on {iface}")))?;
                    Ok(())
                },
                |xdp| attach_xdp(xdp, iface, c_iface, mode),
            )?;
            self.links.push(link);
        }

        for (name, which, attach_type) in [
            (TC_INGRESS, LINK_TC_INGRESS, TcAttachType::Ingress),
            (TC_EGRESS, LINK_TC_EGRESS, TcAttachType::Egress),
        ] {
            let tc: &mut SchedClassifier = program(&mut self.ebpf, name)?;
            let link = attach_pinned(
                &self.pins.link(iface, which),
                tc,
                |tc, fd| {
                    let link = SchedClassifierLink::try_from(fd)
                        .map_err(|e| DatapathError::Other(e.to_string()))?;
                    tc.attach_to_link(link)
                        .map_err(prog_err(format!("replacing {name} on {iface}")))?;
                    Ok(())
                },
                |tc| attach_tcx(tc, name, iface, c_iface, attach_type),
            )?;
            self.links.push(link);
        }
        info!(iface, "datapath attached");
        Ok(())
    }
}

impl ServedInterfaces for BpfDatapath {
    fn serve(&mut self, iface: &str, mode: XdpAttachMode) -> Result<(), DatapathError> {
        if mode == XdpAttachMode::Auto {
            return Err(DatapathError::Other(format!(
                "{iface}: the XDP mode must be chosen per interface before attaching (xdp_mode::choose)"
            )));
        }
        self.attach(iface, mode)
    }

    /// The interfaces with a link pin directory.
    fn served(&self) -> Result<Vec<String>, DatapathError> {
        let links = self.pins.links();
        let entries = match fs::read_dir(&links) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("reading {}", links.display()))(e)),
        };
        let mut served = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("reading link pins"))?;
            served.push(entry.file_name().to_string_lossy().into_owned());
        }
        served.sort();
        Ok(served)
    }

    /// Removing a link's last pin (with no descriptor open) detaches it.
    fn unserve(&mut self, iface: &str) -> Result<(), DatapathError> {
        match fs::remove_dir_all(self.pins.links().join(iface)) {
            Ok(()) => {
                info!(iface, "datapath detached (interface no longer served)");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("unpinning links of {iface}"))(e)),
        }
    }
}

/// The program `name`, typed.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| DatapathError::Other(format!("program {name} missing")))?
        .try_into()
        .map_err(prog_err(format!("program {name} has the wrong type")))
}

/// Whether an error (or one of its sources) is EBUSY.
fn is_busy(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// How long an XDP attach waits for a just-unpinned link of another mode
/// to go: the kernel frees a link's last reference from a workqueue, so
/// the old program can still be attached for a moment (EBUSY).
const XDP_MODE_SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Attaches XDP in `mode`; native falls back to generic (skb) mode where the
/// driver has no XDP support. EBUSY (a program of another mode still
/// attached, being released) is retried for [`XDP_MODE_SWITCH_WAIT`].
fn attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    c_iface: &CStr,
    mode: XdpAttachMode,
) -> Result<FdLink, DatapathError> {
    let deadline = std::time::Instant::now() + XDP_MODE_SWITCH_WAIT;
    loop {
        match try_attach_xdp(xdp, iface, c_iface, mode) {
            Err(AttachFailure::Busy(e)) if std::time::Instant::now() < deadline => {
                tracing::debug!(iface, error = %e, "XDP attach busy; retrying");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(AttachFailure::Busy(e) | AttachFailure::Other(e)) => return Err(e),
            Ok(link) => return Ok(link),
        }
    }
}

enum AttachFailure {
    Busy(DatapathError),
    Other(DatapathError),
}

fn try_attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    c_iface: &CStr,
    mode: XdpAttachMode,
) -> Result<FdLink, AttachFailure> {
    let classify = |op: String| {
        move |e: aya::programs::ProgramError| {
            if is_busy(&e) {
                AttachFailure::Busy(prog_err(op)(e))
            } else {
                AttachFailure::Other(prog_err(op)(e))
            }
        }
    };
    let native = match mode {
        XdpAttachMode::Native => xdp.attach(c_iface, XdpMode::Driver),
        _ => xdp.attach(c_iface, XdpMode::Skb),
    };
    let id = match native {
        Ok(id) => id,
        Err(e) if mode == XdpAttachMode::Generic || is_busy(&e) => {
            return Err(classify(format!("attaching XDP to {iface}"))(e));
        }
        Err(e) => {
            warn!(iface, error = %e, "native XDP unavailable, using generic (skb) mode");
            xdp.attach(c_iface, XdpMode::Skb)
                .map_err(classify(format!("attaching XDP to {iface}")))?
        }
    };
    let link = xdp
        .take_link(id)
        .map_err(|e| AttachFailure::Other(prog_err("taking XDP link")(e)))?;
    FdLink::try_from(link).map_err(|e| {
        AttachFailure::Other(DatapathError::Other(format!(
            "XDP on {iface} was attached without a bpf_link ({e}); cannot pin it"
        )))
    })
}

/// Updates the link pinned at `path` with `replace`, or (no pin, or a
/// defunct link) creates one with `create` and pins it.
fn attach_pinned<P>(
    path: &Path,
    prog: &mut P,
    replace: impl FnOnce(&mut P, FdLink) -> Result<(), DatapathError>,
    create: impl FnOnce(&mut P) -> Result<FdLink, DatapathError>,
) -> Result<PinnedLink, DatapathError> {
    if path.exists() {
        let pinned = PinnedLink::from_pin(path)
            .map_err(|e| DatapathError::Other(format!("opening {}: {e}", path.display())))?;
        // Keep a second handle on the pin: `replace` consumes its FdLink.
        let held = PinnedLink::from_pin(path)
            .map_err(|e| DatapathError::Other(format!("opening {}: {e}", path.display())))?;
        match replace(prog, FdLink::from(pinned)) {
            Ok(()) => return Ok(held),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "pinned link unusable, attaching anew");
                drop(held);
                fs::remove_file(path).map_err(io_err(format!("unpinning {}", path.display())))?;
            }
        }
    }
    let link = create(prog)?;
    link.pin(path)
        .map_err(|e| DatapathError::Other(format!("pinning {}: {e}", path.display())))
}

/// An exclusive lock on a pin directory, held for a daemon's life: a
/// second daemon (or a teardown) on the same bpffs is refused before it
/// touches a pin. A `flock` on the directory itself (bpffs holds no
/// regular files to lock).
#[derive(Debug)]
pub struct PinLock {
    _dir: fs::File,
}

/// Makes sure `pins` is on a bpffs (mounting one there if needed) and
/// locks it; see [`PinLock`].
pub fn lock_pins(pins: &PinDir) -> Result<PinLock, DatapathError> {
    ensure_bpffs(pins.root())?;
    lock_dir(pins.root())
}

/// Locks `pins` if it exists (`Ok(None)` if not): for teardown, which
/// must never create or mount anything.
pub fn lock_existing_pins(pins: &PinDir) -> Result<Option<PinLock>, DatapathError> {
    if !pins.root().exists() {
        return Ok(None);
    }
    lock_dir(pins.root()).map(Some)
}

fn lock_dir(dir: &Path) -> Result<PinLock, DatapathError> {
    use std::os::fd::AsRawFd as _;
    let file = fs::File::open(dir).map_err(io_err(format!("opening {}", dir.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(DatapathError::Other(format!(
            "another netagent daemon holds the datapath pinned in {}; nothing was changed",
            dir.display()
        )));
    }
    Ok(PinLock { _dir: file })
}

/// Removes the pins of maps an earlier version used and this one does
/// not (a layout change renames a map), so they do not linger in bpffs.
fn remove_retired_pins(pins: &PinDir) -> Result<(), DatapathError> {
    for name in RETIRED {
        let path = pins.map(name);
        match fs::remove_file(&path) {
            Ok(()) => info!(map = name, "removed the pin of a retired map"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("unpinning {}", path.display()))(e)),
        }
    }
    Ok(())
}

/// Makes sure `dir` is on a bpffs, mounting one there if not (for example
/// when the agent runs under `ip netns exec`, which remounts /sys).
fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let cpath = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| DatapathError::Other(format!("bad path {}", dir.display())))?;
    // SAFETY: statfs into a zeroed struct with a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } != 0 {
        return Err(io_err(format!("statfs {}", dir.display()))(
            io::Error::last_os_error(),
        ));
    }
    if st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    warn!(dir = %dir.display(), "not on a bpffs; mounting one there");
    // SAFETY: plain mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            cpath.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io_err(format!("mounting bpffs on {}", dir.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Removes every pin under `pins` (links first, which detaches the
/// programs, then maps). Collects every failure instead of stopping at the
/// first, so one stuck pin does not hide the others.
pub fn teardown(pins: &PinDir) -> Result<(), DatapathError> {
    let mut errors = Vec::new();
    for dir in [
        pins.links(),
        pins.endpoint_links(),
        pins.sock_links(),
        pins.maps(),
    ] {
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DatapathError::Other(format!(
            "teardown incomplete: {}",
            errors.join("; ")
        )))
    }
}

/// Attaches a TC program with TCX and returns its link, ready to pin.
fn attach_tcx(
    tc: &mut SchedClassifier,
    name: &str,
    iface: &str,
    c_iface: &CStr,
    attach_type: TcAttachType,
) -> Result<FdLink, DatapathError> {
    let id = tc
        .attach(
            c_iface,
            TcAttach::Tcx {
                attach_type,
                order: LinkOrder::default(),
            },
        )
        .map_err(prog_err(format!("attaching {name} (TCX) to {iface}")))?;
    let link = tc.take_link(id).map_err(prog_err("taking TC link"))?;
    FdLink::try_from(link).map_err(|e| DatapathError::Other(e.to_string()))
}
