//! Who is calling: the address of the connection's peer, or, when the peer is a proxy the
//! operator trusts (`CHARTBRIDGE_TRUSTED_PROXIES`), the address that proxy says it forwarded
//! for (the right-most `X-Forwarded-For` entry that is not itself a trusted proxy: the left
//! ones are the client's to invent). Connection caps and rate limits count by it.

use std::net::{IpAddr, SocketAddr};

pub use crate::caller::ClientAddr;
pub use crate::config::TrustedProxies;
use axum::http::Request;

/// The calling client of a request that arrived from `peer`.
pub fn client_of<B>(proxies: &TrustedProxies, peer: IpAddr, request: &Request<B>) -> IpAddr {
    if !proxies.trusts(peer) {
        return peer;
    }
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .map_while(|entry| address_in(entry))
        .find(|ip| !proxies.trusts(*ip))
        .unwrap_or(peer)
}

/// The address in an `X-Forwarded-For` entry: `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]:port`.
fn address_in(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|v6| v6.parse().ok())
}

/// A (v6) client is counted by its /64: one host holds a whole /64.
pub fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forwarded: &[&str]) -> Request<()> {
        let mut builder = Request::builder();
        for f in forwarded {
            builder = builder.header("x-forwarded-for", *f);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let spoofed = request(&["1.1.1.1, 203.0.113.9"]);
        assert_eq!(client_of(&proxies, stranger, &spoofed), stranger);
        assert_eq!(
            client_of(&proxies, proxy, &spoofed),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "the right-most entry the proxy added"
        );
        let chained = request(&["203.0.113.9", "10.9.9.9"]);
        assert_eq!(
            client_of(&proxies, proxy, &chained),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "proxies in the chain are skipped"
        );
        assert_eq!(client_of(&proxies, proxy, &request(&["junk"])), proxy);
        for (with_port, client) in [
            ("203.0.113.9:51234", "203.0.113.9"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
        ] {
            assert_eq!(
                client_of(&proxies, proxy, &request(&[with_port])),
                client.parse::<IpAddr>().unwrap()
            );
        }
        assert_eq!(client_of(&proxies, proxy, &request(&[])), proxy);
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(counted_as(a), counted_as(b));
        let v4: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(counted_as(v4), "198.51.100.7".parse::<IpAddr>().unwrap());
    }
}
