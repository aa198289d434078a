//! Name resolution for the safe fetcher: the names are resolved here, every
//! address is checked against the [`AddressRules`], and only checked
//! addresses go back to reqwest, which then connects to exactly those (no
//! second lookup a DNS-rebinding server could answer differently).
//! [`HostResolver`] is the hook: the system resolver in service, a fixed
//! table in tests.

use super::address::AddressRules;
use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Turns a host name into its addresses.
pub trait HostResolver: Send + Sync + 'static {
    /// Every address of `host` (port-less).
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A name resolved to an address the rules refuse; found again in the
/// error chain of the failed request (see `super::is_refused`).
#[derive(Debug, thiserror::Error)]
#[error("the host resolves to an address that is not allowed")]
pub(super) struct RefusedAddress;

/// reqwest's resolver for the fetcher's client.
pub(super) struct CheckedResolver {
    pub(super) hosts: Arc<dyn HostResolver>,
    pub(super) rules: Arc<AddressRules>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let hosts = Arc::clone(&self.hosts);
        let rules = Arc::clone(&self.rules);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = hosts.lookup(&host).await?;
            if ips.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} has no address"),
                )
                .into());
            }
            // One refused address refuses the name: a mixed answer is how
            // rebinding attacks look.
            if let Some(refused) = ips.iter().find(|ip| !rules.allows(**ip)) {
                tracing::warn!(%host, address = %refused, "fetch refused: the name resolves to a non-public address");
                return Err(RefusedAddress.into());
            }
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
