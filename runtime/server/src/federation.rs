//! Requests to other servers: where a server name is served (IP literals
//! and explicit ports directly, otherwise `/.well-known/matrix/server`,
//! then port 8448; SRV records are not looked up), over TLS checked
//! against the system's roots or `federation_custom_ca_list`, never to the
//! addresses the IP range blocklist names, each request signed with this
//! server's key in an `X-Matrix` header carrying its `destination`.

use crate::config::HomeserverConfig;
use crate::outbound::{FilteringResolver, Ranges};
use crate::service::server_keys::ServerKeys;
use reqwest::Method;
use ruma::ServerName;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The port a server name without one is served on.
const DEFAULT_PORT: u16 = 8448;
/// How long a `.well-known` answer (or its absence) is believed.
const WELL_KNOWN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const WELL_KNOWN_FAILURE_TTL: Duration = Duration::from_secs(10 * 60);
/// The largest answer read from another server (a `send_join` answer
/// carries a room's whole state).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// The largest `.well-known` answer read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;

/// Why a request to another server failed.
#[derive(Debug, Clone)]
pub enum FederationError {
    /// Not sent: the address is blocked, or the name is no server name.
    Refused(String),
    /// No answer: the connection, TLS or a timeout failed.
    Unreachable(String),
    /// The server answered with an error status (and its Matrix error, if
    /// it sent one).
    Status { status: u16, body: Value },
    /// The answer is not what was asked for: not JSON, or too large.
    BadAnswer(String),
}

impl std::fmt::Display for FederationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FederationError::Refused(why) => write!(f, "not sent: {why}"),
            FederationError::Unreachable(why) => write!(f, "unreachable: {why}"),
            FederationError::Status { status, body } => write!(f, "answered {status}: {body}"),
            FederationError::BadAnswer(why) => write!(f, "bad answer: {why}"),
        }
    }
}

/// Where a server name is served: the `host:port` to connect to, which is
/// also the TLS name and `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: u16,
}

impl Authority {
    fn base_url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{}", self.port),
            _ => format!("https://{}:{}", self.host, self.port),
        }
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets).
fn split_host_port(name: &str) -> (String, Option<u16>) {
    if let Some(rest) = name.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (ip.to_string(), port);
        }
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().ok()),
        _ => (name.to_string(), None),
    }
}

pub struct FederationClient {
    http: reqwest::Client,
    ranges: Arc<Ranges>,
    well_known: Mutex<HashMap<String, (Option<Authority>, Instant)>>,
}

impl FederationClient {
    /// The client the config describes; an unreadable CA file is an error
    /// naming `federation_custom_ca_list`.
    pub fn new(config: &HomeserverConfig) -> Result<FederationClient, String> {
        let ranges = Arc::new(match &config.federation_ip_range_blacklist {
            Some(blocked) => Ranges {
                blocked: blocked.clone(),
                allowed: Vec::new(),
            },
            None => Ranges {
                blocked: config.ip_range_blacklist.clone(),
                allowed: config.ip_range_whitelist.clone(),
            },
        });
        let mut builder = reqwest::Client::builder()
            .dns_resolver(FilteringResolver(ranges.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("Axon/", env!("CARGO_PKG_VERSION")));
        if !config.federation_custom_ca_list.is_empty() {
            let mut roots = Vec::new();
            for (i, path) in config.federation_custom_ca_list.iter().enumerate() {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("federation_custom_ca_list[{i}]: {}: {e}", path.display())
                })?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    format!("federation_custom_ca_list[{i}]: {}: {e}", path.display())
                })?;
                if certificates.is_empty() {
                    return Err(format!(
                        "federation_custom_ca_list[{i}]: {} holds no PEM certificate",
                        path.display()
                    ));
                }
                roots.extend(certificates);
            }
            builder = builder.tls_certs_only(roots);
        }
        if !config.federation_verify_certificates {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| format!("the federation client cannot be built: {e}"))?;
        Ok(FederationClient {
            http,
            ranges,
            well_known: Mutex::new(HashMap::new()),
        })
    }

    /// Where `server` is served, per the spec's resolution steps (SRV
    /// aside).
    async fn resolve(&self, server: &ServerName) -> Result<Authority, FederationError> {
        let (host, port) = split_host_port(server.as_str());
        if host.parse::<IpAddr>().is_ok() || port.is_some() {
            return Ok(Authority {
                host,
                port: port.unwrap_or(DEFAULT_PORT),
            });
        }
        let cached = self
            .well_known
            .lock()
            .unwrap()
            .get(&host)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(delegated, _)| delegated.clone());
        let delegated = match cached {
            Some(delegated) => delegated,
            None => {
                let delegated = self.well_known(&host).await;
                let ttl = if delegated.is_some() {
                    WELL_KNOWN_TTL
                } else {
                    WELL_KNOWN_FAILURE_TTL
                };
                self.well_known
                    .lock()
                    .unwrap()
                    .insert(host.clone(), (delegated.clone(), Instant::now() + ttl));
                delegated
            }
        };
        Ok(delegated.unwrap_or(Authority {
            host,
            port: DEFAULT_PORT,
        }))
    }

    /// `GET https://<host>/.well-known/matrix/server`: the delegated name,
    /// if the host names one.
    async fn well_known(&self, host: &str) -> Option<Authority> {
        let authority = Authority {
            host: host.to_string(),
            port: 443,
        };
        let answer = self
            .fetch(
                &authority,
                Method::GET,
                "/.well-known/matrix/server",
                None,
                None,
                MAX_WELL_KNOWN_BYTES,
            )
            .await
            .ok()?;
        let delegated = answer.get("m.server")?.as_str()?;
        let (host, port) = split_host_port(delegated);
        if host.is_empty() || ServerName::parse(delegated).is_err() {
            return None;
        }
        Some(Authority {
            host,
            port: port.unwrap_or(DEFAULT_PORT),
        })
    }

    /// An unsigned `GET` (the key endpoints need no signature).
    pub async fn get_unsigned(
        &self,
        server: &ServerName,
        path: &str,
    ) -> Result<Value, FederationError> {
        let authority = self.resolve(server).await?;
        self.fetch(&authority, Method::GET, path, None, None, MAX_ANSWER_BYTES)
            .await
    }

    /// A request signed by this server (`origin`) for `destination`.
    pub async fn send(
        &self,
        keys: &ServerKeys,
        destination: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, FederationError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| FederationError::Refused(format!("the body is not JSON: {e}")))?;
        let authorization = keys
            .authorization(
                destination,
                method.as_str(),
                path_and_query,
                body.as_deref(),
            )
            .map_err(FederationError::Refused)?;
        let authority = self.resolve(destination).await?;
        self.fetch(
            &authority,
            method,
            path_and_query,
            Some(authorization),
            body,
            MAX_ANSWER_BYTES,
        )
        .await
    }

    async fn fetch(
        &self,
        authority: &Authority,
        method: Method,
        path_and_query: &str,
        authorization: Option<String>,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Value, FederationError> {
        if let Ok(ip) = authority.host.parse::<IpAddr>() {
            if !self.ranges.permits(ip) {
                return Err(FederationError::Refused(format!(
                    "{ip} is in the federation IP range blocklist"
                )));
            }
        }
        let url = format!("{}{path_and_query}", authority.base_url());
        let mut request = self.http.request(method, &url);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| FederationError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FederationError::Unreachable(error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(FederationError::BadAnswer(format!(
                    "{url}: the answer is larger than {limit} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed = serde_json::from_slice::<Value>(&bytes);
        if !status.is_success() {
            return Err(FederationError::Status {
                status: status.as_u16(),
                body: parsed.unwrap_or(Value::Null),
            });
        }
        parsed.map_err(|e| FederationError::BadAnswer(format!("{url}: not JSON: {e}")))
    }
}

/// An error with its causes, which is where TLS and DNS failures say what
/// went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn server_names_split_into_host_and_port() {
        assert_eq!(split_host_port("example.org"), ("example.org".into(), None));
        assert_eq!(
            split_host_port("example.org:8448"),
            ("example.org".into(), Some(8448))
        );
        assert_eq!(
            split_host_port("127.0.0.1:9000"),
            ("127.0.0.1".into(), Some(9000))
        );
        assert_eq!(split_host_port("[::1]:9000"), ("::1".into(), Some(9000)));
        assert_eq!(split_host_port("[::1]"), ("::1".into(), None));
    }
}
