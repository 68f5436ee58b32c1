//! The server holds under abuse: connections that never finish their headers are closed, and
//! one client address cannot take every connection.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{TestApp, client_from, spawn_app_with};

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the server closed `socket` (end of stream or reset) within `limit`; what it sent
/// before closing is answered.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    outcome
        .ok()
        .map(|()| String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test]
async fn a_connection_whose_headers_never_finish_is_closed() {
    let app =
        spawn_app_with(|c| c.app.server.header_read_timeout = Duration::from_millis(500)).await;
    let port = port_of(&app);

    // A request line and one header, then nothing; and a connection that says nothing at all.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );

    // A kept-alive connection that goes quiet after its answer is closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(answered.unwrap().starts_with("HTTP/1.1 200"));

    // Whole requests are served as before.
    let ok = app.get("/healthz").await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let app = spawn_app_with(|c| c.app.server.max_connections_per_client = 4).await;
    let port = port_of(&app);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // One more from the same address (accepted after them: the kernel queues in order) is
    // closed at once, unanswered.
    let mut over = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(
        closed_within(&mut over, Duration::from_secs(10))
            .await
            .as_deref(),
        Some(""),
        "closed without an answer"
    );

    // Another client is served meanwhile.
    let other = client_from("127.0.0.2")
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    // Once its connections close (the server notices), the first client is served again.
    drop(held);
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the client is served again",
        || async {
            let again = client_from("127.0.0.1")
                .get(format!("{}/healthz", app.address))
                .send()
                .await;
            again.is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
}
