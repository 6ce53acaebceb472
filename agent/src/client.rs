//! The CLI side of the local API: one request, one response.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::api::{Request, Response};

/// Sends `request` to the daemon at `socket` and returns its response; an
/// `Error` response becomes an `Err` carrying the daemon's message.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the netagent daemon at {} (is `netagent daemon` running?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line).context("sending the request")?;
    let mut reply = String::new();
    // A bulk answer is megabytes: read it in large pieces.
    BufReader::with_capacity(1 << 20, &stream)
        .read_line(&mut reply)
        .context("reading the daemon's response")?;
    if reply.is_empty() {
        bail!("the daemon closed the connection without answering");
    }
    match Response::from_line(&reply).context("decoding the daemon's response")? {
        Response::Error { message } => bail!("{message}"),
        response => Ok(response),
    }
}
