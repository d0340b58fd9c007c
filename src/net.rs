//! Small TCP helpers shared by the two servers (the Zabbix gateway and the HTTP endpoint).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

/// How long a closing connection keeps draining what the client still sends.
const LINGER: Duration = Duration::from_millis(250);

/// Writes the whole reply, half-closes, then drains what the client still sends (at most
/// `drain_cap` bytes, at most [`LINGER`]): closing a socket with unread input makes the kernel
/// send a reset, which can destroy the reply before the client has read it.
///
/// # Errors
/// The write or shutdown error; draining errors are ignored.
pub async fn reply_and_close(stream: &mut TcpStream, reply: &[u8], drain_cap: usize) -> std::io::Result<()> {
    stream.write_all(reply).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    let until = tokio::time::Instant::now() + LINGER;
    while drained < drain_cap {
        match timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}
