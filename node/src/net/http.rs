//! HTTP clients: one builder with the settings every outbound client of
//! Trail shares (SLS, Splunk HEC, the cloud tag APIs). Callers add what is
//! theirs (a DNS override for devstack, say) before `build()`.

use std::time::Duration;

/// What Trail says it is in every request.
pub const USER_AGENT: &str = concat!("trail/", env!("CARGO_PKG_VERSION"));

/// A client builder with Trail's defaults: its user agent, the given
/// connect and whole-request timeouts, idle connections kept below the
/// 60 s most load balancers allow, and no Nagle delay on small requests.
pub fn client_builder(connect: Duration, request: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect)
        .timeout(request)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
}

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is larger than the {cap} bytes allowed here")]
    TooLarge { cap: usize },
    #[error("reading the response body: {0}")]
    Read(#[from] reqwest::Error),
}

/// A response body, refused as soon as its declared length or the bytes
/// received pass `cap`: whoever answers cannot make Trail buffer more than
/// the caller allows. A body that arrives in one chunk is not copied.
pub async fn read_body(mut resp: reqwest::Response, cap: usize) -> Result<bytes::Bytes, BodyError> {
    let declared = resp.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Err(BodyError::TooLarge { cap });
    }
    let Some(first) = resp.chunk().await? else {
        return Ok(bytes::Bytes::new());
    };
    if first.len() > cap {
        return Err(BodyError::TooLarge { cap });
    }
    let Some(second) = resp.chunk().await? else {
        return Ok(first);
    };
    let mut body =
        bytes::BytesMut::with_capacity((declared as usize).max(first.len() + second.len()));
    body.extend_from_slice(&first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
        next = resp.chunk().await?;
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `response` verbatim.
    async fn serve(response: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(&response).await;
            let _ = conn.shutdown().await;
        });
        format!("http://{addr}/")
    }

    fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in chunks {
            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    }

    async fn get(url: &str, cap: usize) -> Result<bytes::Bytes, BodyError> {
        let client = client_builder(Duration::from_secs(5), Duration::from_secs(5))
            .build()
            .unwrap();
        read_body(client.get(url).send().await.unwrap(), cap).await
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_declared_or_streamed() {
        let declared = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nxx".to_vec();
        let e = get(&serve(declared).await, 1000).await.unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { cap: 1000 }), "{e}");
        // No length said: counted as it arrives.
        let big = vec![b'a'; 700];
        let e = get(&serve(chunked(&[&big, &big])).await, 1000)
            .await
            .unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { cap: 1000 }), "{e}");
        let e = get(&serve(chunked(&[&vec![b'b'; 1001]])).await, 1000)
            .await
            .unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { cap: 1000 }), "{e}");
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let body = get(&serve(chunked(&[b"abc", b"defg", b"h"])).await, 8)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcdefgh");
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        assert_eq!(&get(&serve(plain).await, 5).await.unwrap()[..], b"hello");
        let empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert!(get(&serve(empty).await, 5).await.unwrap().is_empty());
    }
}
