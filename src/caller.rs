//! Who is calling: the client address the server resolved for a request (the connection's
//! peer, or what a trusted proxy says it forwarded for; `server::client_addr`). The server puts
//! it on every request; handlers that check where a delivery comes from read it.

use std::net::{IpAddr, SocketAddr};

use axum::{extract::ConnectInfo, http::Request};

/// The client's address, as the server put it on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of `request`; `None` when it did not come through `server::serve`.
    pub fn of<B>(request: &Request<B>) -> Option<IpAddr> {
        if let Some(ClientAddr(ip)) = request.extensions().get::<ClientAddr>() {
            return Some(*ip);
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    }
}
