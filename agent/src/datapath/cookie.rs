//! A network namespace's cookie, as the kernel gives it to eBPF programs
//! (`bpf_get_netns_cookie`): what the socket hooks and the resolver's
//! loopback program key on.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// The cookie of the network namespace `socket` lives in
/// (`SO_NETNS_COOKIE`).
pub fn netns_cookie_of(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt into a u64 we own, its size passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}
