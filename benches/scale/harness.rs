//! What every scenario shares: the two servers started the same way on
//! loopback, one load client, and the process readings (CPU, RSS) taken from
//! `/proc` so they are the server's alone.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Rate limits raised on both servers: the load is the point.
const LIMITS: &str = "
rc_message: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_login:
  address: {per_second: 100000, burst_count: 100000}
  account: {per_second: 100000, burst_count: 100000}
  failed_attempts: {per_second: 100000, burst_count: 100000}
rc_joins:
  local: {per_second: 100000, burst_count: 100000}
rc_presence:
  per_user: {per_second: 100000, burst_count: 100000}
rc_room_creation: {per_second: 100000, burst_count: 100000}
";

/// Which server, for the rows and for what only one of them needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Axon,
    Synapse,
}

pub struct Server {
    pub kind: Kind,
    pub base: String,
    child: Child,
    /// Spawn to the first answer of `/versions`.
    pub started_in: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

/// What a server is started with beyond the common settings.
#[derive(Default, Clone)]
pub struct Setup {
    /// No-op modules listed in the config, each on every hook a send passes.
    pub noop_modules: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// User and system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn wait_ready(base: &str, child: &mut Child, name: &str) {
    let http = reqwest::Client::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    while Instant::now() < give_up {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited at start: {status}");
        }
        if let Ok(r) = http
            .get(format!("{base}/_matrix/client/versions"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{name} not ready in 120 s");
}

pub async fn start(kind: Kind, dir: &Path, setup: &Setup) -> Server {
    match kind {
        Kind::Axon => start_axon(dir, setup).await,
        Kind::Synapse => start_synapse(dir, setup).await,
    }
}

/// This bench binary, serving (see `main`); its log into the directory
/// `AXON_BENCH_LOGS` names, if any.
async fn start_axon(dir: &Path, setup: &Setup) -> Server {
    let port = free_port();
    let config = dir.join("axon.yaml");
    let modules = "  - module: bench.Noop\n".repeat(setup.noop_modules);
    std::fs::write(
        &config,
        format!(
            "server_name: bench
public_baseurl: http://127.0.0.1:{port}/
listeners: [{{port: {port}, bind_addresses: ['127.0.0.1']}}]
database: {{name: sqlite3, args: {{database: {db}}}}}
media_store_path: {media}
enable_registration: true
enable_registration_without_verification: true
{LIMITS}
modules:{none}
{modules}",
            db = dir.join("axon.db").display(),
            media = dir.join("axon-media").display(),
            none = if modules.is_empty() { " []" } else { "" },
        ),
    )
    .unwrap();
    let log = match std::env::var_os("AXON_BENCH_LOGS") {
        Some(logs) => {
            std::fs::create_dir_all(&logs).unwrap();
            let path = Path::new(&logs).join(format!("axon-{port}.log"));
            Stdio::from(std::fs::File::create(path).unwrap())
        }
        None => Stdio::null(),
    };
    let spawned = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(crate::SERVE_ENV, "1")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("axon starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child, "axon").await;
    Server {
        kind: Kind::Axon,
        base,
        child,
        started_in: spawned.elapsed(),
    }
}

/// Synapse's twin of `bench.Noop`: the same hooks, each answering "go on".
const SYNAPSE_NOOP: &str = r#"
from synapse.module_api import NOT_SPAM


class Noop:
    def __init__(self, config, api):
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed, on_new_event=self.on_new_event
        )
        api.register_account_validity_callbacks(is_user_expired=self.is_user_expired)
        api.register_ratelimit_callbacks(
            get_ratelimit_override_for_user=self.get_ratelimit_override_for_user
        )
        api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.add_field_to_unsigned_callback
        )

    async def check_event_for_spam(self, event):
        return NOT_SPAM

    async def check_event_allowed(self, event, state):
        return True, None

    async def on_new_event(self, event, state):
        pass

    async def is_user_expired(self, user):
        return None

    async def get_ratelimit_override_for_user(self, user, limiter_name):
        return None

    async def add_field_to_unsigned_callback(self, event):
        return {}
"#;

async fn start_synapse(dir: &Path, setup: &Setup) -> Server {
    let python = axon_testkit::synapse::python();
    let port = free_port();
    let config = dir.join("synapse.yaml");
    std::fs::write(dir.join("bench_noop.py"), SYNAPSE_NOOP).unwrap();
    let modules = "  - module: bench_noop.Noop\n".repeat(setup.noop_modules);
    std::fs::write(
        &config,
        format!(
            "server_name: bench
public_baseurl: http://127.0.0.1:{port}/
pid_file: {dir}/synapse.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
database: {{name: sqlite3, args: {{database: {dir}/synapse.db}}}}
media_store_path: {dir}/synapse-media
signing_key_path: {dir}/synapse.signing.key
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
rc_joins_per_room: {{per_second: 100000, burst_count: 100000}}
{LIMITS}
modules:{none}
{modules}",
            dir = dir.display(),
            none = if modules.is_empty() { " []" } else { "" },
        ),
    )
    .unwrap();
    if !dir.join("synapse.signing.key").exists() {
        let keys = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .status();
        assert!(keys.is_ok_and(|s| s.success()), "synapse --generate-keys");
    }
    let log = std::fs::File::create(dir.join("synapse.log")).unwrap();
    let spawned = Instant::now();
    let mut child = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(&config)
        .env("PYTHONPATH", dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("synapse starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child, "synapse").await;
    Server {
        kind: Kind::Synapse,
        base,
        child,
        started_in: spawned.elapsed(),
    }
}

/// One user's access token and the load client's connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client-server API call that must succeed; its JSON answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/_matrix/client/v3{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(300));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn create_room(&self, body: Value) -> String {
        self.post("/createRoom", body).await["room_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn join(&self, room: &str) {
        self.post(&format!("/rooms/{}/join", enc(room)), json!({}))
            .await;
    }

    /// The same user on another connection pool.
    pub fn on(&self, http: &reqwest::Client) -> Client {
        Client {
            http: http.clone(),
            ..self.clone()
        }
    }

    /// Another device of the same user, as a fresh client logs in.
    pub async fn login_again(&self, user: &str) -> Client {
        let answer: Value = self
            .http
            .post(format!("{}/_matrix/client/v3/login", self.base))
            .json(&json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": PASSWORD,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            token: answer["access_token"].as_str().expect("logged in").into(),
            ..self.clone()
        }
    }
}

const PASSWORD: &str = "bench-password";

/// A load client whose pool keeps `connections` idle connections around.
pub fn http(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap()
}

/// Percent-encoding for the room IDs, tokens and filters put into paths.
pub fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('!', "%21")
        .replace(':', "%3A")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace('#', "%23")
        .replace('~', "%7E")
}

pub async fn register(http: &reqwest::Client, base: &str, name: &str) -> Client {
    let url = format!("{base}/_matrix/client/v3/register");
    let body =
        json!({ "username": name, "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    let mut answer: Value = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if answer.get("access_token").is_none() {
        // Synapse's first step hands out a session for the dummy stage.
        let mut body = body;
        body["auth"]["session"] = answer["session"].clone();
        answer = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    Client {
        http: http.clone(),
        base: base.to_string(),
        token: answer["access_token"]
            .as_str()
            .expect("registered")
            .to_string(),
    }
}

/// Registers `count` users named `{prefix}{i}`, a few at a time, as people
/// arrive; `then` runs for each (a join, say) before the next few.
pub async fn register_many<F, Fut>(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
    then: F,
) -> Vec<Client>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Client>,
{
    let mut clients = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(4) {
        let arrivals = chunk.iter().map(|i| {
            let then = &then;
            async move { then(register(http, base, &format!("{prefix}{i}")).await).await }
        });
        clients.extend(join_all(arrivals).await);
    }
    clients
}

/// Runs futures concurrently on this task and collects their outputs in order.
pub async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A scenario's figures for both servers, printed as rows with the ratio.
pub struct Table {
    title: String,
    rows: Vec<(String, f64, Option<f64>, &'static str)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(
        &mut self,
        name: impl Into<String>,
        axon: f64,
        synapse: Option<f64>,
        unit: &'static str,
    ) {
        self.rows.push((name.into(), axon, synapse, unit));
    }

    pub fn print(&self) {
        println!("{:<58} {:>15} {:>15}", self.title, "Axon", "Synapse");
        for (name, axon, synapse, unit) in &self.rows {
            match synapse {
                Some(s) => println!(
                    "  {name:<56} {axon:>10.2} {unit:<4} {s:>10.2} {unit:<4} ratio {:>7.3}",
                    axon / s
                ),
                None => println!("  {name:<56} {axon:>10.2} {unit}"),
            }
        }
        println!();
    }
}
