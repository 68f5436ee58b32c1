//! Which addresses Chartbridge may call when a practice admin typed them (an HCW@Home server).
//!
//! An address is refused when it is not a public unicast address: loopback, private,
//! shared (CGNAT), link-local (cloud metadata lives there), unspecified, multicast, broadcast,
//! documentation and reserved ranges, in IPv4 and IPv6, IPv4 hidden in IPv6 (mapped,
//! compatible, NAT64, 6to4) included. The URL parser has already turned every spelling of an
//! IPv4 literal (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) into the address itself. An
//! operator allows a host or a range explicitly (`CHARTBRIDGE_OUTBOUND_ALLOW`); the sandbox
//! demo allows loopback that way.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Host names of cloud metadata services, refused whatever they resolve to.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// IPv4 ranges that are not the public internet.
const V4_REFUSED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "an unspecified address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a reserved address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a reserved address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
];

/// IPv6 ranges that are not the public internet (those embedding IPv4 are read through).
const V6_REFUSED: &[(&str, &str)] = &[
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "a reserved address"),
    ("64:ff9b:1::/48", "a private address"),
    ("100::/64", "a reserved address"),
    ("2001::/23", "a reserved address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a reserved address"),
    ("fc00::/7", "a private address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a link-local address"),
    ("ff00::/8", "a multicast address"),
];

/// Why an address may not be called. The text is for the admin who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    #[error("the address is {0}, which Chartbridge does not call")]
    NotPublic(&'static str),
    #[error("the address is a cloud metadata service, which Chartbridge does not call")]
    Metadata,
    #[error("the address must start with https://")]
    NotHttps,
    #[error("the server's name could not be found")]
    Unresolved,
}

/// What an operator allows beyond the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl FromStr for AddressPolicy {
    type Err = String;

    /// A comma- or space-separated list of host names and ranges (`127.0.0.0/8`, `::1`,
    /// `hcw.clinic.internal`).
    fn from_str(list: &str) -> Result<Self, String> {
        let mut policy = AddressPolicy::default();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                policy
                    .hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!("{entry:?} is neither a host name nor a range"));
            }
        }
        Ok(policy)
    }
}

impl AddressPolicy {
    /// Whether the operator allowed this host name by name.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether the operator allowed this address explicitly.
    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Refuses an address that is neither public nor allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        if self.allows_ip(ip) {
            return Ok(());
        }
        match not_public(ip) {
            Some(kind) => Err(AddressRefused::NotPublic(kind)),
            None => Ok(()),
        }
    }

    /// Refuses what can be refused without a lookup: a metadata name, an address literal that
    /// is not public, plain http to a host the operator did not allow. Answers the name that
    /// still has to be looked up (and checked), if any.
    pub fn check_url<'u>(&self, url: &'u Url) -> Result<Option<&'u str>, AddressRefused> {
        let allowed = match url.host() {
            Some(Host::Domain(name)) => {
                let bare = name.trim_end_matches('.');
                if METADATA_NAMES.iter().any(|m| m.eq_ignore_ascii_case(bare)) {
                    return Err(AddressRefused::Metadata);
                }
                self.allows_name(name)
            }
            Some(Host::Ipv4(ip)) => {
                self.check_ip(IpAddr::V4(ip))?;
                self.allows_ip(IpAddr::V4(ip))
            }
            Some(Host::Ipv6(ip)) => {
                self.check_ip(IpAddr::V6(ip))?;
                self.allows_ip(IpAddr::V6(ip))
            }
            None => return Err(AddressRefused::Unresolved),
        };
        if url.scheme() != "https" && !allowed {
            return Err(AddressRefused::NotHttps);
        }
        match url.host() {
            Some(Host::Domain(name)) if !self.allows_name(name) => Ok(Some(name)),
            _ => Ok(None),
        }
    }
}

/// Letters, digits and hyphens in dot-separated labels.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// What kind of non-public address `ip` is; `None` for a public unicast address.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => not_public_v4(v4),
            None => V6_REFUSED
                .iter()
                .find(|(net, _)| Ipv6Net::from_str(net).expect("valid range").contains(&v6))
                .map(|(_, kind)| *kind),
        },
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_broadcast() {
        return Some("a broadcast address");
    }
    V4_REFUSED
        .iter()
        .find(|(net, _)| Ipv4Net::from_str(net).expect("valid range").contains(&ip))
        .map(|(_, kind)| *kind)
}

/// The IPv4 address an IPv6 address routes to: mapped (`::ffff:a.b.c.d`), translated
/// (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`). (The deprecated "compatible" form
/// `::a.b.c.d` is refused as reserved.)
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    match ip.segments() {
        // IPv4-translated (SIIT): ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, policy: &AddressPolicy) -> bool {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        policy.check_url(&url).is_err()
    }

    /// The spellings the security review tried, and their relatives.
    pub const SPELLINGS: &[&str] = &[
        "http://127.0.0.1:8084/",
        "https://127.0.0.1/",
        "http://[::1]:8084/",
        "https://[::1]/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://0177.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://192.168.0.1/",
        "https://172.16.5.4/",
        "https://0.0.0.0/",
        "https://0/",
        "https://100.100.100.200/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://[::127.0.0.1]/",
        "https://[64:ff9b::a00:1]/",
        "https://[2002:7f00:1::]/",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
        "https://metadata.google.internal/",
        "https://METADATA.google.internal./",
        "http://hcw.example.org/",
    ];

    #[test]
    fn every_spelling_of_a_private_address_is_refused() {
        let policy = AddressPolicy::default();
        for url in SPELLINGS {
            assert!(refused(url, &policy), "{url} must be refused");
        }
        for ok in [
            "https://hcw.example.org/",
            "https://93.184.215.14/",
            "https://[2606:4700::1111]/",
        ] {
            assert!(!refused(ok, &policy), "{ok} is public");
        }
    }

    #[test]
    fn a_name_is_left_to_the_lookup() {
        let policy = AddressPolicy::default();
        let url = Url::parse("https://hcw.example.org/tenant/").unwrap();
        assert_eq!(policy.check_url(&url), Ok(Some("hcw.example.org")));
        let literal = Url::parse("https://93.184.215.14/").unwrap();
        assert_eq!(policy.check_url(&literal), Ok(None));
    }

    #[test]
    fn the_operator_allows_ranges_and_names() {
        let policy: AddressPolicy = "127.0.0.0/8, ::1 hcw.clinic.internal".parse().unwrap();
        assert!(!refused("http://127.0.0.1:8084/", &policy));
        assert!(!refused("http://127.1/", &policy));
        assert!(!refused("http://[::1]:9/", &policy));
        assert!(!refused("http://hcw.clinic.internal/", &policy));
        assert!(refused("https://10.0.0.1/", &policy));
        assert!(refused("https://metadata.google.internal/", &policy));
        let allowed = Url::parse("https://HCW.clinic.internal./").unwrap();
        assert_eq!(
            policy.check_url(&allowed),
            Ok(None),
            "no lookup check for an allowed name"
        );
        assert!(policy.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check_ip("10.1.1.1".parse().unwrap()).is_err());
        for bad in [
            "10.0.0.0/33",
            "host!",
            "fe80::1/200",
            "a..b",
            "*.example.org",
        ] {
            assert!(bad.parse::<AddressPolicy>().is_err(), "{bad}");
        }
        assert_eq!(
            "".parse::<AddressPolicy>().unwrap(),
            AddressPolicy::default()
        );
    }

    #[test]
    fn addresses_hidden_in_ipv6_are_read_through() {
        for (ip, public) in [
            ("::ffff:8.8.8.8", true),
            ("::ffff:10.0.0.1", false),
            ("64:ff9b::808:808", true),
            ("64:ff9b::7f00:1", false),
            ("2002:c0a8:1::", false),
            ("2002:808:808::", true),
            ("::ffff:0:7f00:1", false),
            ("::ffff:0:808:808", true),
            ("3fff::1", false),
            ("2606:4700::1111", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(not_public(ip).is_none(), public, "{ip}");
        }
    }
}
