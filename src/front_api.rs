//! The running front door's runtime API: HAProxy's admin socket in
//! `<storage>/.gemctl/front/`, reached from the host gemctl runs on, never
//! published. One command per connection; HAProxy answers and closes.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::front;

/// How long a command may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one command to the socket at `socket`; its answer, as HAProxy wrote it.
pub async fn send(socket: &Path, command: &str) -> std::io::Result<String> {
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    let mut stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(socket))
        .await
        .map_err(|_| timed_out("connect timed out"))??;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut answer))
        .await
        .map_err(|_| timed_out("no answer"))??;
    Ok(answer)
}

/// Sends a command that changes something to the front of the project stored at
/// `storage`; an error when it cannot be sent or HAProxy refuses it.
pub async fn command(storage: &Path, command: &str) -> Result<String, Error> {
    let socket = front::dir(storage).join(front::SOCKET_FILE);
    let answer = send(&socket, command).await.map_err(|e| {
        Error::Apply(format!(
            "the front's runtime API ({}) did not take `{command}`: {e}. Is the front running \
             (`gemctl status`)?",
            socket.display()
        ))
    })?;
    // Commands that change something answer nothing, or a line of information.
    let lower = answer.to_ascii_lowercase();
    let refused = [
        "fail",
        "unknown",
        "no such",
        "not found",
        "require",
        "invalid",
        "can't",
    ];
    if refused.iter().any(|w| lower.contains(w)) {
        return Err(Error::Apply(format!(
            "the front refused `{command}`: {}",
            answer.trim()
        )));
    }
    Ok(answer)
}
