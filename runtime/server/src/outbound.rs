//! Requests the server makes on a user's behalf (to push gateways): never
//! to the addresses `ip_range_blacklist` names, whatever the URL says,
//! since a user chooses the URL. Federation (`crate::federation`) filters
//! its addresses the same way.

use crate::config::{HomeserverConfig, IpRange};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::IpAddr;
use std::sync::Arc;

/// The addresses a kind of request may go to: all but the blocked ones,
/// with exceptions.
#[derive(Clone)]
pub(crate) struct Ranges {
    pub blocked: Vec<IpRange>,
    pub allowed: Vec<IpRange>,
}

impl Ranges {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !ip.is_unspecified()
            && (self.allowed.iter().any(|r| r.contains(ip))
                || !self.blocked.iter().any(|r| r.contains(ip)))
    }
}

/// Resolves names, then drops the addresses the server must not contact;
/// a name with none left fails to resolve.
pub(crate) struct FilteringResolver(pub Arc<Ranges>);

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let ranges = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| ranges.permits(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address this server may contact").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client bound by the config's IP ranges. Redirects are not
/// followed: one to a blocked address literal would skip the resolver.
#[derive(Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    ranges: Arc<Ranges>,
}

impl OutboundClient {
    pub fn new(config: &HomeserverConfig) -> OutboundClient {
        let ranges = Arc::new(Ranges {
            blocked: config.ip_range_blacklist.clone(),
            allowed: config.ip_range_whitelist.clone(),
        });
        let client = reqwest::Client::builder()
            .dns_resolver(FilteringResolver(ranges.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("Axon/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        OutboundClient { client, ranges }
    }

    /// POSTs JSON and reads a JSON answer; any failure (a refused address,
    /// the network, a non-2xx status, a body that is not JSON) is an error.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if !self.ranges.permits(ip) {
                return Err(format!("{ip} is in ip_range_blacklist"));
            }
        }
        let response = self
            .client
            .post(parsed)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        response
            .json()
            .await
            .map_err(|e| format!("answer is not JSON: {e}"))
    }
}
