//! [`SocketHooks`] for [`BpfDatapath`]: the four cgroup sock_addr programs
//! on the daemon's cgroup, their links pinned under
//! `sockhooks/<cgroup id>/`, and the host namespace's cookie in their
//! config map.
//!
//! A restart attaches this load's programs next to the pinned ones (cgroup
//! links always sit beside other programs, other tools' hooks included)
//! and only then lets go of the old links, so no connect
//! in between goes untranslated; a hook that runs twice is harmless (the
//! second sees a container address, which is never published).

use std::{
    fs, io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use datapath_common::{SockConfig, prog_names::SOCKET_HOOKS};
use tracing::info;

use super::{BpfDatapath, io_err, map_err, prog_err, program};
use crate::datapath::{DatapathError, SocketHooks};

impl SocketHooks for BpfDatapath {
    fn attach_socket_hooks(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let dir_fd = fs::File::open(cgroup)
            .map_err(io_err(format!("opening cgroup {}", cgroup.display())))?;
        let id = dir_fd
            .metadata()
            .map_err(io_err(format!("reading cgroup {}", cgroup.display())))?
            .ino();
        let root = self.pins.sock_links();
        let dir = root.join(id.to_string());
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // This namespace's sockets are the host's.
        let config = SockConfig {
            host_netns_cookie: netns_cookie()
                .map_err(io_err("reading this namespace's cookie (SO_NETNS_COOKIE)"))?,
        };
        self.sock_config
            .set(0, &config, 0)
            .map_err(map_err("writing the socket hooks' config"))?;
        for name in SOCKET_HOOKS {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            let id = prog
                // As a bpf_link (5.7+), always beside other programs: the
                // kernel takes no attach flags for cgroup links (EINVAL).
                .attach(&dir_fd, CgroupAttachMode::Single)
                .map_err(prog_err(format!(
                    "attaching {name} to {}",
                    cgroup.display()
                )))?;
            let link = prog
                .take_link(id)
                .map_err(prog_err("taking a cgroup link"))?;
            // A bpf_link on any kernel this datapath loads on (5.7+).
            let link = FdLink::try_from(link).map_err(|e| DatapathError::Other(e.to_string()))?;
            let pin = dir.join(name);
            // bpffs takes no dot in a name.
            let fresh = dir.join(format!("{name}_new"));
            let _ = fs::remove_file(&fresh);
            let pinned = link
                .pin(&fresh)
                .map_err(|e| DatapathError::Other(format!("pinning {}: {e}", fresh.display())))?;
            // The old link (if any) goes once the new one is in place.
            match fs::remove_file(&pin) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("unpinning {}", pin.display()))(e)),
            }
            fs::rename(&fresh, &pin).map_err(io_err(format!("renaming {}", fresh.display())))?;
            self.links.push(pinned);
        }
        // Hooks a daemon left on another cgroup (its --cgroup changed).
        for stale in pinned_cgroups(&root)?.into_iter().filter(|d| *d != dir) {
            fs::remove_dir_all(&stale).map_err(io_err(format!("unpinning {}", stale.display())))?;
            info!(pins = %stale.display(), "socket hooks on another cgroup detached");
        }
        self.sock_cgroup = Some(cgroup.to_path_buf());
        info!(cgroup = %cgroup.display(), "socket hooks attached");
        Ok(())
    }

    fn detach_socket_hooks(&mut self) -> Result<(), DatapathError> {
        let root = self.pins.sock_links();
        for dir in pinned_cgroups(&root)? {
            fs::remove_dir_all(&dir).map_err(io_err(format!("unpinning {}", dir.display())))?;
        }
        self.sock_cgroup = None;
        Ok(())
    }

    fn socket_hooks_cgroup(&self) -> Option<PathBuf> {
        self.sock_cgroup.clone()
    }
}

/// The per-cgroup pin directories under `root`.
fn pinned_cgroups(root: &Path) -> Result<Vec<PathBuf>, DatapathError> {
    match fs::read_dir(root) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_err(format!("reading {}", root.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(format!("reading {}", root.display()))(e)),
    }
}

/// The calling thread's network namespace cookie (`SO_NETNS_COOKIE`, the
/// value `bpf_get_netns_cookie` returns for its sockets).
fn netns_cookie() -> io::Result<u64> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    crate::datapath::cookie::netns_cookie_of(std::os::fd::AsFd::as_fd(&fd))
}
