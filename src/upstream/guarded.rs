//! Calls to addresses a practice admin typed ([`Guarded`]): the address is checked
//! ([`AddressPolicy`]) when the admin saves it and again on every call, and the connection goes
//! to the addresses that were checked: the client's resolver is the check, so a name that
//! answers a public address at save time and a private one later (DNS rebinding) is refused
//! when it is called. Address literals never reach a resolver; [`Guarded::send`] checks them
//! before sending. No proxy, no redirects.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use reqwest::{
    RequestBuilder, Response,
    dns::{Addrs, Name, Resolve, Resolving},
};
use url::Url;

use super::{UpstreamError, address::AddressPolicy, address::AddressRefused};

/// A host name's addresses. The system's resolver in production; tests answer from a table
/// (no test looks up a real name or connects anywhere but loopback).
pub trait LookupHost: Send + Sync + 'static {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver.
pub struct SystemLookup;

impl LookupHost for SystemLookup {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_string();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The lookup [`Guarded`] resolves with, as configuration carries it.
#[derive(Clone)]
pub struct HostLookup(pub Arc<dyn LookupHost>);

impl Default for HostLookup {
    fn default() -> Self {
        HostLookup(Arc::new(SystemLookup))
    }
}

impl std::fmt::Debug for HostLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostLookup")
    }
}

/// Resolves and checks: every address a name answers must pass the policy, or none is used.
struct CheckingResolver {
    policy: Arc<AddressPolicy>,
    lookup: HostLookup,
}

impl CheckingResolver {
    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, AddressRefused> {
        let addresses = self
            .lookup
            .0
            .lookup(name)
            .await
            .map_err(|_| AddressRefused::Unresolved)?;
        if addresses.is_empty() {
            return Err(AddressRefused::Unresolved);
        }
        if !self.policy.allows_name(name) {
            for ip in &addresses {
                self.policy.check_ip(*ip)?;
            }
        }
        Ok(addresses)
    }
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = CheckingResolver {
            policy: self.policy.clone(),
            lookup: self.lookup.clone(),
        };
        Box::pin(async move {
            let addresses = match resolver.addresses(name.as_str()).await {
                Ok(addresses) => addresses,
                // A lookup that failed now may work later: not a refusal, just unreachable.
                Err(AddressRefused::Unresolved) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the name could not be looked up",
                    )
                    .into());
                }
                Err(refused) => return Err(refused.into()),
            };
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The client for admin-entered addresses.
#[derive(Clone)]
pub struct Guarded {
    http: reqwest::Client,
    resolver: Arc<CheckingResolver>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("policy", &self.resolver.policy)
            .finish()
    }
}

impl Guarded {
    pub fn new(
        timeout: Duration,
        policy: AddressPolicy,
        lookup: HostLookup,
    ) -> reqwest::Result<Self> {
        let resolver = Arc::new(CheckingResolver {
            policy: Arc::new(policy),
            lookup,
        });
        let http = super::client_builder(timeout)
            .no_proxy()
            .dns_resolver(resolver.clone())
            .build()?;
        Ok(Self { http, resolver })
    }

    /// The client to build requests with (send them with [`Guarded::send`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether `url` may be called, looking its name up now: for the admin saving it.
    pub async fn check(&self, url: &Url) -> Result<(), AddressRefused> {
        match self.resolver.policy.check_url(url)? {
            Some(name) => self.resolver.addresses(name).await.map(drop),
            None => Ok(()),
        }
    }

    /// Sends `request` to `party` if its address may be called; a refused address is
    /// [`UpstreamError::Refused`], before anything is sent.
    pub async fn send(
        &self,
        party: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, UpstreamError> {
        // Sent by this client whichever client built it: the resolver is the check.
        let request = request
            .build()
            .map_err(|e| UpstreamError::from_reqwest(party, e))?;
        // Literals are checked here; names by the resolver, as the connection is made.
        self.resolver
            .policy
            .check_url(request.url())
            .map_err(|reason| UpstreamError::Refused { party, reason })?;
        match self.http.execute(request).await {
            Ok(response) => super::check(party, response).await,
            Err(e) => Err(match refusal_in(&e) {
                Some(reason) => UpstreamError::Refused { party, reason },
                None => UpstreamError::from_reqwest(party, e),
            }),
        }
    }
}

/// The address refusal behind a failed connection, if that is what failed it.
fn refusal_in(error: &reqwest::Error) -> Option<AddressRefused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}
