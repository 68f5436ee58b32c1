//! How the HTTP server treats connections and callers: timeouts, connection caps, trusted
//! proxies, and the per-client budgets of the doors anyone can knock on. The server
//! (`server/`) applies them; they are read and checked here with the rest of the settings.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// A connection whose request headers have not all arrived this long after it began
    /// waiting for them (a new connection, or an idle kept-alive one) is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections from one client address at once (a trusted proxy is not limited).
    pub max_connections_per_client: usize,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How long a stop waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long an instance told to stop keeps serving, not ready and closing each
    /// connection after its answer, before it stops accepting.
    pub drain_delay: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_client: 64,
            trusted_proxies: TrustedProxies::default(),
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::from_secs(5),
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    /// Comma- or space-separated addresses and ranges.
    fn from_str(list: &str) -> Result<Self, String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an address or range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A list of addresses and ranges (`10.2.0.0/16, 203.0.113.7`), as typed: who may send a
/// partner's deliveries, for one.
pub type AddressList = TrustedProxies;

/// A budget: `per_minute` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_minute: u32,
    pub burst: u32,
}

/// Each door's budget per client address: at the handshake and the webhooks it is spent by
/// refused requests only (signed traffic from Hint's and the partners' servers is never
/// limited by address); at Instant On by every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `POST /hint/handshake`: refused handshakes (unsigned, forged, stale, replayed).
    pub handshake: Budget,
    /// `/hint/connect…`: a practice installing us; real installs are rare.
    pub install: Budget,
    /// `/webhooks/…`: refused deliveries (unsigned, forged, unknown practice).
    pub webhooks: Budget,
    /// Valid signed handshakes of one practice (per instance), far above any practice's own
    /// rate: what a leaked secret or a looping sender can send for it.
    pub practice_handshake: Budget,
    /// Valid signed deliveries for one practice (every sender, per instance).
    pub practice_webhooks: Budget,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            handshake: Budget {
                per_minute: 300,
                burst: 60,
            },
            install: Budget {
                per_minute: 20,
                burst: 5,
            },
            webhooks: Budget {
                per_minute: 1200,
                burst: 300,
            },
            // 100 handshakes a second for hours, 3,000 at once: a practice of a hundred
            // clinicians opening a page every second stays far below.
            practice_handshake: Budget {
                per_minute: 6_000,
                burst: 3_000,
            },
            // 200 deliveries a second, 6,000 at once: a practice's partners send a few a
            // minute.
            practice_webhooks: Budget {
                per_minute: 12_000,
                burst: 6_000,
            },
        }
    }
}

impl std::str::FromStr for RateLimitSettings {
    type Err = String;

    /// `door=per_minute/burst` entries, comma separated (`handshake=600/120, webhooks=3000/600`);
    /// doors not named keep their default. Doors: `handshake`, `install`, `webhooks` (per client
    /// address), `practice-handshake`, `practice-webhooks` (per practice).
    fn from_str(list: &str) -> Result<Self, String> {
        let mut settings = RateLimitSettings::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("{entry:?} is not door=per_minute/burst");
            let (door, budget) = entry.split_once('=').ok_or_else(bad)?;
            let (per_minute, burst) = budget.split_once('/').ok_or_else(bad)?;
            let budget = Budget {
                per_minute: per_minute.trim().parse().map_err(|_| bad())?,
                burst: burst.trim().parse().map_err(|_| bad())?,
            };
            if budget.per_minute == 0 || budget.burst == 0 {
                return Err(format!("{entry:?}: a budget must be at least 1/1"));
            }
            match door.trim() {
                "handshake" => settings.handshake = budget,
                "install" => settings.install = budget,
                "webhooks" => settings.webhooks = budget,
                "practice-handshake" => settings.practice_handshake = budget,
                "practice-webhooks" => settings.practice_webhooks = budget,
                other => {
                    return Err(format!(
                        "{other:?} is not a door (handshake, install, webhooks, \
                         practice-handshake, practice-webhooks)"
                    ));
                }
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_configured_by_door() {
        let set: RateLimitSettings = "webhooks=3000/600, handshake = 10/2".parse().unwrap();
        assert_eq!(
            set.webhooks,
            Budget {
                per_minute: 3000,
                burst: 600
            }
        );
        assert_eq!(
            set.handshake,
            Budget {
                per_minute: 10,
                burst: 2
            }
        );
        assert_eq!(set.install, RateLimitSettings::default().install);
        assert_eq!(
            "".parse::<RateLimitSettings>().unwrap(),
            RateLimitSettings::default()
        );
        for bad in [
            "webhooks",
            "doors=1/1",
            "install=0/1",
            "install=5",
            "install=a/b",
        ] {
            assert!(bad.parse::<RateLimitSettings>().is_err(), "{bad}");
        }
    }
}
