//! The homeserver config: Synapse-shaped YAML, so an operator recognises it.
//! Keys Axon does not support are named in warnings, never silently dropped.

pub use axon::config::{ConfigDuration, EXPECTED_DURATION};
use ruma::OwnedServerName;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The sample config, with `{{SERVER_NAME}}` and `{{SHARED_SECRET}}` to fill in.
pub const SAMPLE_TEMPLATE: &str = include_str!("sample.yaml");

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct HomeserverConfig {
    /// The domain of this server's user IDs (`@alice:server_name`).
    #[schemars(with = "String")]
    pub server_name: OwnedServerName,
    #[serde(default)]
    pub public_baseurl: Option<String>,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub enable_registration: bool,
    #[serde(default)]
    pub enable_registration_without_verification: bool,
    /// Guest accounts (`POST /register?kind=guest`), off by default as in
    /// Synapse.
    #[serde(default)]
    pub allow_guest_access: bool,
    #[serde(default)]
    pub registration_shared_secret: Option<String>,
    #[serde(default = "default_media_store")]
    pub media_store_path: PathBuf,
    #[serde(default = "default_max_upload_size", deserialize_with = "size")]
    #[schemars(with = "SizeSchema")]
    pub max_upload_size: u64,
    /// Bytes a user may upload per period (Synapse's `media_upload_limits`);
    /// modules may replace them per user.
    #[serde(default)]
    pub media_upload_limits: Vec<MediaUploadLimitConfig>,
    /// The thumbnail sizes served (Synapse's key and defaults); a request
    /// gets the closest one, made on first request and kept.
    #[serde(default = "default_thumbnail_sizes")]
    pub thumbnail_sizes: Vec<ThumbnailSize>,
    /// Images with more pixels than this are not thumbnailed.
    #[serde(default = "default_max_image_pixels", deserialize_with = "size")]
    #[schemars(with = "SizeSchema")]
    pub max_image_pixels: u64,
    #[serde(default = "RateLimit::message")]
    pub rc_message: RateLimit,
    #[serde(default = "RateLimit::registration")]
    pub rc_registration: RateLimit,
    /// Uploads per user (Synapse's `rc_media_create`).
    #[serde(default = "RateLimit::media_create")]
    pub rc_media_create: RateLimit,
    /// Rooms a user may create (Synapse's `rc_room_creation`).
    #[serde(default = "RateLimit::room_creation")]
    pub rc_room_creation: RateLimit,
    /// Presence changes a user may make (Synapse's `rc_presence`).
    #[serde(default)]
    pub rc_presence: PresenceRateLimits,
    #[serde(default)]
    pub rc_login: LoginRateLimits,
    #[serde(default)]
    pub rc_joins: JoinRateLimits,
    #[serde(default)]
    pub rc_invites: InviteRateLimits,
    /// Requests other servers may make (Synapse's `rc_federation`).
    #[serde(default)]
    pub rc_federation: FederationRateLimits,
    #[serde(default)]
    pub password_config: PasswordConfig,
    /// Synapse's `email:` section: the SMTP server modules send mail through.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// This server's ed25519 signing key, in Synapse's key-file format
    /// (`ed25519 <version> <base64 seed>`); made at start if absent.
    /// Default: `<server_name>.signing.key` beside the database.
    #[serde(default)]
    pub signing_key_path: Option<PathBuf>,
    /// Keys this server signed with before, still published so that old
    /// events verify (Synapse's key): `{"ed25519:id": {key, expired_ts}}`.
    #[serde(default)]
    pub old_signing_keys: std::collections::BTreeMap<String, OldSigningKey>,
    /// The certificate chain (PEM) `tls: true` listeners present.
    #[serde(default)]
    pub tls_certificate_path: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub tls_private_key_path: Option<PathBuf>,
    /// Limits of the HTTP listeners (Axon's keys; Synapse has none).
    #[serde(default)]
    pub http: HttpLimits,
    /// Count and time requests and module callbacks, and serve them to
    /// Prometheus on `metrics` listeners and resources (Synapse's key).
    #[serde(default)]
    pub enable_metrics: bool,
    /// More keys for `/.well-known/matrix/client` (Synapse's key).
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub extra_well_known_client_content: serde_json::Map<String, serde_json::Value>,
    /// The identity server clients are pointed at in the well-known.
    #[serde(default)]
    pub default_identity_server: Option<String>,
    /// Addresses the server never sends requests to on a user's behalf
    /// (push gateways now, other servers later), Synapse's key and default:
    /// loopback, private and link-local networks.
    #[serde(default = "default_ip_range_blacklist")]
    #[schemars(with = "Vec<String>")]
    pub ip_range_blacklist: Vec<IpRange>,
    /// Exceptions to `ip_range_blacklist`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ip_range_whitelist: Vec<IpRange>,
    /// Addresses other servers may not be reached at. When set, it alone
    /// applies to federation (as in Synapse: `federation_ip_range_blacklist:
    /// []` lets a loopback peer in); otherwise `ip_range_blacklist` and
    /// `ip_range_whitelist` do.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub federation_ip_range_blacklist: Option<Vec<IpRange>>,
    /// Whether other servers' TLS certificates are checked (Synapse's key).
    #[serde(default = "yes")]
    pub federation_verify_certificates: bool,
    /// CA certificates (PEM files) that replace the system's roots for
    /// federation, for a private federation (Synapse's key).
    #[serde(default)]
    pub federation_custom_ca_list: Vec<PathBuf>,
    /// Whether other servers may read this server's public room directory
    /// (Synapse's key; off by default, as in Synapse: the list is for
    /// this server's users unless the operator shares it).
    #[serde(default)]
    pub allow_public_rooms_over_federation: bool,
    /// Servers asked for another server's keys when that server cannot be
    /// (Synapse's key). Axon's default is none, where Synapse's is
    /// matrix.org: no third party is trusted unless the operator says so.
    #[serde(default)]
    pub trusted_key_servers: Vec<TrustedKeyServer>,
    /// TURN servers handed to clients by `GET /voip/turnServer` (Synapse's
    /// keys): with a shared secret, time-limited credentials (the TURN REST
    /// API coturn implements), or a fixed user name and password.
    #[serde(default)]
    pub turn_uris: Vec<String>,
    #[serde(default)]
    pub turn_shared_secret: Option<String>,
    /// A file holding the shared secret instead.
    #[serde(default)]
    pub turn_shared_secret_path: Option<PathBuf>,
    #[serde(default)]
    pub turn_username: Option<String>,
    #[serde(default)]
    pub turn_password: Option<String>,
    /// How long credentials stay valid (default `1h`).
    #[serde(default = "default_turn_user_lifetime")]
    pub turn_user_lifetime: ConfigDuration,
    /// Whether guests get TURN credentials (as in Synapse, they do).
    #[serde(default = "yes")]
    pub turn_allow_guests: bool,
    /// Loaded by the module loader, which reports its own errors. Its
    /// schema comes from the compiled-in modules (`module::config_schema`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub modules: serde_yaml::Value,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub port: u16,
    #[serde(default = "default_bind_addresses")]
    pub bind_addresses: Vec<IpAddr>,
    #[serde(default = "default_listener_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub x_forwarded: bool,
    #[serde(default = "default_resources")]
    pub resources: Vec<ListenerResource>,
}

impl ListenerConfig {
    /// A `metrics` listener, or an `http` one with the `metrics` resource.
    pub fn serves_metrics(&self) -> bool {
        self.kind == "metrics"
            || self
                .resources
                .iter()
                .any(|r| r.names.iter().any(|n| n == "metrics"))
    }

    /// Whether it serves the client API (every `http` listener does).
    pub fn serves_client(&self) -> bool {
        self.kind == "http"
    }

    /// Whether an `http` listener names any of `resources`.
    fn serves_any(&self, resources: &[&str]) -> bool {
        self.kind == "http"
            && self
                .resources
                .iter()
                .any(|r| r.names.iter().any(|n| resources.contains(&n.as_str())))
    }

    /// Whether it serves `keys` (which `federation` implies): the server's
    /// signing keys, which other servers fetch.
    pub fn serves_keys(&self) -> bool {
        self.serves_any(&["keys", "federation"])
    }

    /// Whether it serves `federation`: the server-server API.
    pub fn serves_federation(&self) -> bool {
        self.serves_any(&["federation"])
    }

    /// Whether it serves `openid` (which `federation` implies): the
    /// userinfo endpoint integration managers ask with a client's OpenID
    /// token.
    pub fn serves_openid(&self) -> bool {
        self.serves_any(&["openid", "federation"])
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerResource {
    pub names: Vec<String>,
    #[serde(default)]
    pub compress: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "default_database_name")]
    pub name: String,
    #[serde(default)]
    pub args: DatabaseArgs,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct DatabaseArgs {
    /// The SQLite file.
    #[serde(default = "default_database_path")]
    pub database: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            name: default_database_name(),
            args: DatabaseArgs::default(),
        }
    }
}

impl Default for DatabaseArgs {
    fn default() -> Self {
        DatabaseArgs {
            database: default_database_path(),
        }
    }
}

/// A notary (`trusted_key_servers`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyServer {
    pub server_name: String,
    /// Its keys, `{"ed25519:id": "base64"}`: its answers must be signed by
    /// one of them. Without them its answers are not trusted, unless
    /// `accept_keys_insecurely`.
    #[serde(default)]
    pub verify_keys: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub accept_keys_insecurely: bool,
}

/// A signing key no longer in use (`old_signing_keys`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OldSigningKey {
    /// The public key, unpadded base64.
    pub key: String,
    /// When it stopped being used, in ms since the epoch.
    pub expired_ts: u64,
}

impl HomeserverConfig {
    /// Where the signing key is read from (or written to, when absent).
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_path.clone().unwrap_or_else(|| {
            let dir = self
                .database
                .args
                .database
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            dir.join(format!("{}.signing.key", self.server_name))
        })
    }
}

/// How the server sends mail (Synapse's `email:` keys).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default = "default_smtp_host")]
    pub smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    #[serde(default)]
    pub smtp_user: Option<String>,
    #[serde(default)]
    pub smtp_pass: Option<String>,
    /// TLS from the first byte (port 465).
    #[serde(default)]
    pub force_tls: bool,
    /// Refuse to send unless STARTTLS succeeds.
    #[serde(default)]
    pub require_transport_security: bool,
    /// Use STARTTLS when the server offers it.
    #[serde(default = "yes")]
    pub enable_tls: bool,
    /// The sender; `%(app)s` becomes `app_name`.
    #[serde(default = "default_notif_from")]
    pub notif_from: String,
    #[serde(default = "default_app_name")]
    pub app_name: String,
}

fn default_smtp_host() -> String {
    "localhost".into()
}
fn default_smtp_port() -> u16 {
    25
}
fn default_notif_from() -> String {
    "%(app)s <noreply@localhost>".into()
}
fn default_app_name() -> String {
    "Matrix".into()
}

/// Synapse's `password_config`: whether password logins and the local
/// password database are used (modules may handle `m.login.password`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub localdb_enabled: bool,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            enabled: true,
            localdb_enabled: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// At most `max_size` bytes uploaded per `time_period`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaUploadLimitConfig {
    pub time_period: ConfigDuration,
    #[serde(deserialize_with = "size")]
    #[schemars(with = "SizeSchema")]
    pub max_size: u64,
}

/// What a size or duration field accepts, for the config schema.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SizeSchema {
    /// Bytes.
    Bytes(u64),
    /// Such as `50M`, `512K`, `1G`.
    Text(String),
}

/// How long a client may take, and how many may be connected at once.
/// The defaults let a slow mobile client through.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// To send a request's head (the request line and headers); also how
    /// long an idle keep-alive connection stays open. Default `30s`.
    #[serde(default = "HttpLimits::default_header_timeout")]
    pub header_timeout: ConfigDuration,
    /// The longest gap between two chunks of a request's body. Default `30s`.
    #[serde(default = "HttpLimits::default_body_timeout")]
    pub body_timeout: ConfigDuration,
    /// Connections served at once, over all listeners (at most the file
    /// descriptor limit less 64). Default 8192.
    #[serde(default = "HttpLimits::default_max_connections")]
    pub max_connections: usize,
}

impl HttpLimits {
    fn default_header_timeout() -> ConfigDuration {
        ConfigDuration(std::time::Duration::from_secs(30))
    }
    fn default_body_timeout() -> ConfigDuration {
        ConfigDuration(std::time::Duration::from_secs(30))
    }
    fn default_max_connections() -> usize {
        8192
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Self::default_header_timeout(),
            body_timeout: Self::default_body_timeout(),
            max_connections: Self::default_max_connections(),
        }
    }
}

/// A token bucket: `burst_count` actions at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst_count: f64,
}

impl RateLimit {
    const fn new(per_second: f64, burst_count: f64) -> Self {
        RateLimit {
            per_second,
            burst_count,
        }
    }
    fn message() -> Self {
        Self::new(0.2, 10.0)
    }
    fn registration() -> Self {
        Self::new(0.17, 3.0)
    }
    fn media_create() -> Self {
        Self::new(10.0, 50.0)
    }
    fn room_creation() -> Self {
        Self::new(0.016, 10.0)
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRateLimits {
    #[serde(default = "PresenceRateLimits::default_per_user")]
    pub per_user: RateLimit,
}

impl PresenceRateLimits {
    fn default_per_user() -> RateLimit {
        RateLimit::new(0.1, 1.0)
    }
}

impl Default for PresenceRateLimits {
    fn default() -> Self {
        PresenceRateLimits {
            per_user: Self::default_per_user(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRateLimits {
    #[serde(default = "LoginRateLimits::default_address")]
    pub address: RateLimit,
    #[serde(default = "LoginRateLimits::default_account")]
    pub account: RateLimit,
    #[serde(default = "LoginRateLimits::default_failed")]
    pub failed_attempts: RateLimit,
}

impl LoginRateLimits {
    fn default_address() -> RateLimit {
        RateLimit::new(0.003, 5.0)
    }
    fn default_account() -> RateLimit {
        RateLimit::new(0.003, 5.0)
    }
    fn default_failed() -> RateLimit {
        RateLimit::new(0.17, 3.0)
    }
}

impl Default for LoginRateLimits {
    fn default() -> Self {
        LoginRateLimits {
            address: Self::default_address(),
            account: Self::default_account(),
            failed_attempts: Self::default_failed(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRateLimits {
    #[serde(default = "JoinRateLimits::default_local")]
    pub local: RateLimit,
    #[serde(default = "JoinRateLimits::default_remote")]
    pub remote: RateLimit,
}

impl JoinRateLimits {
    fn default_local() -> RateLimit {
        RateLimit::new(0.1, 10.0)
    }
    fn default_remote() -> RateLimit {
        RateLimit::new(0.01, 10.0)
    }
}

impl Default for JoinRateLimits {
    fn default() -> Self {
        JoinRateLimits {
            local: Self::default_local(),
            remote: Self::default_remote(),
        }
    }
}

/// Synapse's `rc_federation`: per origin server, requests beyond
/// `sleep_limit` in a window of `window_size` ms wait `sleep_delay` ms
/// each; at most `concurrent` are served at once and the rest wait; beyond
/// `reject_limit` waiting or served, a request is refused with 429.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationRateLimits {
    #[serde(default = "FederationRateLimits::default_window_size")]
    pub window_size: u64,
    #[serde(default = "FederationRateLimits::default_sleep_limit")]
    pub sleep_limit: usize,
    #[serde(default = "FederationRateLimits::default_sleep_delay")]
    pub sleep_delay: u64,
    #[serde(default = "FederationRateLimits::default_reject_limit")]
    pub reject_limit: usize,
    #[serde(default = "FederationRateLimits::default_concurrent")]
    pub concurrent: usize,
}

impl FederationRateLimits {
    fn default_window_size() -> u64 {
        1000
    }
    fn default_sleep_limit() -> usize {
        10
    }
    fn default_sleep_delay() -> u64 {
        500
    }
    fn default_reject_limit() -> usize {
        50
    }
    fn default_concurrent() -> usize {
        3
    }
}

impl Default for FederationRateLimits {
    fn default() -> Self {
        FederationRateLimits {
            window_size: Self::default_window_size(),
            sleep_limit: Self::default_sleep_limit(),
            sleep_delay: Self::default_sleep_delay(),
            reject_limit: Self::default_reject_limit(),
            concurrent: Self::default_concurrent(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRateLimits {
    #[serde(default = "InviteRateLimits::default_per_room")]
    pub per_room: RateLimit,
    #[serde(default = "InviteRateLimits::default_per_user")]
    pub per_user: RateLimit,
    #[serde(default = "InviteRateLimits::default_per_issuer")]
    pub per_issuer: RateLimit,
}

impl InviteRateLimits {
    fn default_per_room() -> RateLimit {
        RateLimit::new(0.3, 10.0)
    }
    fn default_per_user() -> RateLimit {
        RateLimit::new(0.003, 5.0)
    }
    fn default_per_issuer() -> RateLimit {
        RateLimit::new(0.3, 10.0)
    }
}

impl Default for InviteRateLimits {
    fn default() -> Self {
        InviteRateLimits {
            per_room: Self::default_per_room(),
            per_user: Self::default_per_user(),
            per_issuer: Self::default_per_issuer(),
        }
    }
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        port: 8008,
        bind_addresses: default_bind_addresses(),
        kind: default_listener_type(),
        tls: false,
        x_forwarded: false,
        resources: default_resources(),
    }]
}
fn default_bind_addresses() -> Vec<IpAddr> {
    vec![IpAddr::from([127, 0, 0, 1])]
}
fn default_listener_type() -> String {
    "http".into()
}
fn default_resources() -> Vec<ListenerResource> {
    vec![ListenerResource {
        names: vec!["client".into()],
        compress: false,
    }]
}
/// A CIDR range such as `10.0.0.0/8` or `fe80::/10` (a bare address is
/// that one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub network: IpAddr,
    pub prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, width), (addr, addr_width)) = (bits(self.network), bits(ip));
        if width != addr_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (addr >> shift)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IpRange::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected an IP range such as `10.0.0.0/8` or `fe80::/10`, found {text:?}"
            ))
        })
    }
}

fn default_ip_range_blacklist() -> Vec<IpRange> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "169.254.0.0/16",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "2001:db8::/32",
        "ff00::/8",
        "fec0::/10",
    ]
    .into_iter()
    .filter_map(IpRange::parse)
    .collect()
}

/// One entry of `thumbnail_sizes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailSize {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
}

/// `scale` fits the image inside the size; `crop` fills it and cuts the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailMethod {
    Crop,
    Scale,
}

pub(crate) fn default_thumbnail_sizes() -> Vec<ThumbnailSize> {
    use ThumbnailMethod::*;
    [
        (32, 32, Crop),
        (96, 96, Crop),
        (320, 240, Scale),
        (640, 480, Scale),
        (800, 600, Scale),
    ]
    .into_iter()
    .map(|(width, height, method)| ThumbnailSize {
        width,
        height,
        method,
    })
    .collect()
}
fn default_max_image_pixels() -> u64 {
    32 << 20
}
fn default_turn_user_lifetime() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(3600))
}
fn default_database_name() -> String {
    "sqlite3".into()
}
fn default_database_path() -> PathBuf {
    PathBuf::from("homeserver.db")
}
fn default_media_store() -> PathBuf {
    PathBuf::from("media_store")
}
fn default_max_upload_size() -> u64 {
    50 * 1024 * 1024
}

/// Sizes as Synapse writes them: `50M`, `10K`, `1G`, or a number of bytes.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => parse_size(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a size such as `50M`, `512K` or a number of bytes, found {text:?}"
            ))
        }),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let multiplier: u64 = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    number.trim().parse::<u64>().ok()?.checked_mul(multiplier)
}

/// A config problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at `{}`: {}", self.path, self.message)
        }
    }
}

/// A parsed config, with what does not stop the server.
#[derive(Debug, Clone)]
pub struct ParsedConfig {
    pub config: HomeserverConfig,
    pub warnings: Vec<String>,
}

impl HomeserverConfig {
    pub fn load(path: &Path) -> Result<ParsedConfig, Vec<ConfigProblem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigProblem {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }]
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<ParsedConfig, Vec<ConfigProblem>> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            vec![ConfigProblem {
                path: String::new(),
                message: format!("not valid YAML: {e}"),
            }]
        })?;
        let mut warnings = Vec::new();
        let mut ignored = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let mut config: HomeserverConfig =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record))
                .map_err(|e| {
                    let path = e.path().to_string();
                    vec![ConfigProblem {
                        path: if path == "." { String::new() } else { path },
                        message: e.into_inner().to_string(),
                    }]
                })?;
        for key in ignored {
            warnings.push(format!(
                "config key `{key}` is not supported by Axon and is ignored"
            ));
        }
        // An empty secret would be a key anyone knows: as in Synapse, it
        // means shared-secret registration is off.
        if config
            .registration_shared_secret
            .as_deref()
            .is_some_and(|secret| secret.trim().is_empty())
        {
            config.registration_shared_secret = None;
            warnings.push(
                "registration_shared_secret is empty, so shared-secret registration (/_synapse/admin/v1/register) is disabled; set a long random secret to enable it"
                    .into(),
            );
        }
        let problems = config.validate(&mut warnings);
        if problems.is_empty() {
            Ok(ParsedConfig { config, warnings })
        } else {
            Err(problems)
        }
    }

    fn validate(&self, warnings: &mut Vec<String>) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(ConfigProblem {
                path: path.into(),
                message,
            })
        };
        if self.database.name != "sqlite3" {
            problem(
                "database.name",
                format!(
                    "database `{}` is not supported yet; use `sqlite3` (PostgreSQL support is planned)",
                    self.database.name
                ),
            );
        }
        if self.enable_registration && !self.enable_registration_without_verification {
            problem(
                "enable_registration",
                "You have enabled open registration without any verification. This is a known vector for spam and abuse. \
                 Axon has no email, captcha or token verification yet; to allow open registration anyway, set \
                 `enable_registration_without_verification: true`."
                    .into(),
            );
        }
        if self.listeners.is_empty() {
            problem("listeners", "at least one listener is needed".into());
        }
        for (i, notary) in self.trusted_key_servers.iter().enumerate() {
            if notary.verify_keys.is_none() && !notary.accept_keys_insecurely {
                problem(
                    &format!("trusted_key_servers[{i}]"),
                    format!(
                        "`{}` has no `verify_keys`: name its keys (`{{\"ed25519:id\": \"base64\"}}`) so its answers can be checked, or set `accept_keys_insecurely: true`",
                        notary.server_name
                    ),
                );
            }
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.kind != "http" && listener.kind != "metrics" {
                problem(
                    &format!("listeners[{i}].type"),
                    format!(
                        "listener type `{}` is not supported; use `http` or `metrics`",
                        listener.kind
                    ),
                );
            }
            if listener.serves_metrics() && !self.enable_metrics {
                problem(
                    &format!("listeners[{i}]"),
                    "this listener serves metrics, which needs `enable_metrics: true`".into(),
                );
            }
            if listener.tls {
                for (key, value) in [
                    ("tls_certificate_path", &self.tls_certificate_path),
                    ("tls_private_key_path", &self.tls_private_key_path),
                ] {
                    if value.is_none() {
                        problem(
                            key,
                            format!(
                                "listeners[{i}] has `tls: true`, which needs `{key}` (a PEM file)"
                            ),
                        );
                    }
                }
            }
            for (j, resource) in listener.resources.iter().enumerate() {
                for name in &resource.names {
                    if !["client", "metrics", "openid", "keys", "federation"]
                        .contains(&name.as_str())
                    {
                        warnings.push(format!(
                            "listeners[{i}].resources[{j}]: resource `{name}` is not supported by Axon and is ignored"
                        ));
                    }
                }
            }
        }
        for key in ["m.homeserver", "m.identity_server"] {
            if self.extra_well_known_client_content.contains_key(key) {
                problem(
                    &format!("extra_well_known_client_content.{key}"),
                    format!(
                        "`{key}` comes from `{}`; set that key instead",
                        if key == "m.homeserver" {
                            "public_baseurl"
                        } else {
                            "default_identity_server"
                        }
                    ),
                );
            }
        }
        for (i, size) in self.thumbnail_sizes.iter().enumerate() {
            if size.width == 0 || size.height == 0 {
                problem(
                    &format!("thumbnail_sizes[{i}]"),
                    "width and height must be at least 1".into(),
                );
            }
        }
        if self.turn_shared_secret.is_some() && self.turn_shared_secret_path.is_some() {
            problem(
                "turn_shared_secret_path",
                "both `turn_shared_secret` and `turn_shared_secret_path` are set; keep one".into(),
            );
        }
        if let Some(base) = &self.public_baseurl {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                problem(
                    "public_baseurl",
                    format!("expected an http(s) URL, found {base:?}"),
                );
            }
        }
        problems
    }

    /// The public base URL, ending in `/` (Synapse's default: `https://<server_name>/`).
    pub fn public_baseurl(&self) -> String {
        let base = self
            .public_baseurl
            .clone()
            .unwrap_or_else(|| format!("https://{}/", self.server_name));
        if base.ends_with('/') {
            base
        } else {
            base + "/"
        }
    }
}

/// A commented sample config for `server_name`.
pub fn generate(server_name: &str) -> String {
    use rand::Rng;
    let secret: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    SAMPLE_TEMPLATE
        .replace("{{SERVER_NAME}}", server_name)
        .replace("{{SHARED_SECRET}}", &secret)
}

/// The JSON Schema (draft 2020-12) of a homeserver config with the modules
/// compiled into this binary (`axon --config-schema`): the homeserver's keys
/// from its Rust types, and each module's `config:` from its config type.
pub fn config_schema() -> serde_json::Value {
    use serde_json::{json, Value};
    let mut schema = schemars::schema_for!(HomeserverConfig).to_value();
    let mut defs = schema
        .as_object_mut()
        .and_then(|m| m.remove("$defs"))
        .and_then(|d| match d {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    let modules = axon::module::modules_schema(&mut defs);
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("modules".into(), modules);
    }
    if let Some(map) = schema.as_object_mut() {
        map.insert("$defs".into(), Value::Object(defs));
        map.insert("title".into(), json!("Axon homeserver config"));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges() {
        let range = |t| IpRange::parse(t).unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(range("127.0.0.0/8").contains(ip("127.1.2.3")));
        assert!(!range("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(range("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(range("fe80::/10").contains(ip("fe80::1")));
        assert!(!range("fe80::/10").contains(ip("127.0.0.1")));
        assert!(range("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(range("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!range("10.1.2.3").contains(ip("10.1.2.4")));
        assert_eq!(IpRange::parse("10.0.0.0/33"), None);
        assert_eq!(IpRange::parse("nonsense"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50M"), Some(50 << 20));
        assert_eq!(parse_size("10K"), Some(10 << 10));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("12X"), None);
    }
}
