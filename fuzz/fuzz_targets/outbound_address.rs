//! The outbound guard's look at an address a practice admin typed: whatever the spelling,
//! an address it lets through without a lookup is a public one, over https.
#![no_main]

use chartbridge::upstream::address::{AddressPolicy, not_public};
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = Url::parse(text) else {
        return;
    };
    let policy = AddressPolicy::default();
    match policy.check_url(&url) {
        Ok(None) => {
            assert_eq!(url.scheme(), "https", "{url}");
            let ip = match url.host() {
                Some(Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
                Some(Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
                other => panic!("let through without a lookup: {other:?} in {url}"),
            };
            assert_eq!(not_public(ip), None, "{url}");
        }
        Ok(Some(name)) => {
            assert_eq!(url.scheme(), "https", "{url}");
            assert!(matches!(url.host(), Some(Host::Domain(_))), "{url}");
            // A name is looked up and its addresses checked; the metadata names never are.
            let bare = name.trim_end_matches('.').to_ascii_lowercase();
            assert!(bare != "metadata.google.internal" && bare != "metadata", "{url}");
        }
        Err(_) => {}
    }
});
