//! The client side of the local API: one request, one response. The CLI
//! uses [`call`]; the CNI plugin uses [`request`], whose errors say
//! whether the daemon was reachable at all (CNI's "try again later") and
//! what kind of refusal it gave.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::api::{ErrorKind, Request, Response};

/// How long a client waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers at the socket: nothing was asked, so nothing
    /// changed.
    #[error(
        "cannot reach the netagent daemon at {} (is `netagent daemon` running?): {source}",
        socket.display()
    )]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The request was sent but the exchange failed (the daemon may have
    /// carried it out).
    #[error("{what}: {source}")]
    Exchange {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon closed the connection without answering")]
    NoAnswer,
    #[error("decoding the daemon's response: {0}")]
    Decode(#[from] serde_json::Error),
    /// The daemon refused the request.
    #[error("{message}")]
    Refused {
        message: String,
        kind: Option<ErrorKind>,
    },
}

/// Sends `request` to the daemon at `socket` and returns its response; an
/// `Error` response becomes [`ClientError::Refused`].
pub fn request(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        socket: socket.to_owned(),
        source,
    })?;
    let exchange = |what| move |source| ClientError::Exchange { what, source };
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(exchange("setting the answer timeout"))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .map_err(exchange("sending the request"))?;
    let mut reply = String::new();
    // A bulk answer is megabytes: read it in large pieces.
    BufReader::with_capacity(1 << 20, &stream)
        .read_line(&mut reply)
        .map_err(exchange("reading the daemon's response"))?;
    if reply.is_empty() {
        return Err(ClientError::NoAnswer);
    }
    match Response::from_line(&reply)? {
        Response::Error { message, kind } => Err(ClientError::Refused { message, kind }),
        response => Ok(response),
    }
}

/// [`request`] for the CLI, whose errors are messages.
pub fn call(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    Ok(request(socket, req)?)
}
