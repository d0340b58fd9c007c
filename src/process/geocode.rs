//! Optional district names from a Nominatim server (`processing.nominatim_url`).
//!
//! State and county always come from the offline reference data; a geocoder only adds the
//! district (bairro) of a *new* site. Stations sit behind VPNs and public geocoders may be
//! unreachable, so every failure here (no URL, timeout, refused, bad JSON, no district in the
//! answer) yields `None` and a warning — it never fails a file. Plain `http://` only (an
//! internal Nominatim); a small HTTP/1.1 GET with a whole-request deadline and a size cap.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read.
const MAX_ANSWER: usize = 64 << 10;

/// Why no district was found (for the log).
#[derive(Debug, thiserror::Error)]
pub enum GeocodeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("nominatim_url {0:?} is not an http:// URL")]
    BadUrl(String),
    /// Network problem or deadline.
    #[error("geocoder {0} unreachable: {1}")]
    Unreachable(String, String),
    /// Not a usable answer.
    #[error("geocoder answer unusable: {0}")]
    BadAnswer(String),
}

/// The district name of a position, from a Nominatim `reverse` query.
///
/// # Errors
/// [`GeocodeError`] for every failure; callers treat them all as "no district".
pub async fn district(
    base_url: &str,
    latitude: f64,
    longitude: f64,
    deadline: Duration,
) -> Result<Option<String>, GeocodeError> {
    let rest = base_url.strip_prefix("http://").ok_or_else(|| GeocodeError::BadUrl(base_url.into()))?;
    let (authority, path) =
        rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, String::new()));
    if authority.is_empty() || authority.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(GeocodeError::BadUrl(base_url.into()));
    }
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let target = format!(
        "{}/reverse?format=jsonv2&zoom=16&addressdetails=1&accept-language=pt&lat={latitude:.6}&lon={longitude:.6}",
        path.trim_end_matches('/')
    );
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: appcataloga/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let exchange = async {
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut body = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 || body.len() + n > MAX_ANSWER {
                body.extend_from_slice(&chunk[..n.min(MAX_ANSWER.saturating_sub(body.len()))]);
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(body)
    };
    let raw = tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| GeocodeError::Unreachable(address.clone(), format!("no answer within {deadline:?}")))?
        .map_err(|e| GeocodeError::Unreachable(address.clone(), e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| GeocodeError::BadAnswer("no HTTP header".into()))?;
    let ok = head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200");
    if !ok {
        return Err(GeocodeError::BadAnswer(head.lines().next().unwrap_or("").chars().take(80).collect()));
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(GeocodeError::BadAnswer("chunked answers are not supported".into()));
    }
    let value: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| GeocodeError::BadAnswer(e.to_string()))?;
    let address = &value["address"];
    // The original read `suburb`; HEAD added these fallbacks.
    Ok(["suburb", "city_district", "neighbourhood", "village", "quarter"]
        .iter()
        .find_map(|k| address[*k].as_str())
        .map(|s| s.trim().chars().take(100).collect::<String>())
        .filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_district_from_a_reverse_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await.unwrap();
            let body = r#"{"address":{"suburb":"Asa Sul","city":"Brasília"}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        let d = district(&format!("http://127.0.0.1:{port}"), -15.7, -47.9, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(d.as_deref(), Some("Asa Sul"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn failures_are_errors_not_panics() {
        assert!(matches!(
            district("https://x", 0.0, 0.0, Duration::from_millis(100)).await,
            Err(GeocodeError::BadUrl(_))
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let r = district(&format!("http://127.0.0.1:{port}"), 0.0, 0.0, Duration::from_millis(500)).await;
        assert!(matches!(r, Err(GeocodeError::Unreachable(..))), "{r:?}");
    }
}
