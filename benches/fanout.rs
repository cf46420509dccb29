//! Big-room fan-out, Axon beside Synapse on loopback with the same settings
//! and this same load client: M members join one room and long-poll
//! `/sync` with a lazy-loading filter, as Element does; then one sender
//! sends 100 messages at 10 per second. Printed for each server and as
//! ratios: delivery latency (send answered → the member's `/sync` has it)
//! p50/p99, deliveries missing or only behind a gapped timeline, `PUT /send`
//! p50, server CPU seconds of the send phase, RSS before and after, and
//! `/sync` answers per message per member.
//!
//! `cargo bench --bench fanout [-- 100 300]` (member counts; default 100
//! 300). Synapse 1.163 comes from PyPI into `target/bench-synapse` (or the
//! virtualenv `AXON_BENCH_SYNAPSE` names), installed on first use;
//! `-- --axon-only` skips it. Both servers run as their own processes, so
//! CPU and RSS are theirs alone; the load client shares the machine.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MESSAGES: usize = 100;
const RATE_PER_SECOND: u64 = 10;
const LAZY_FILTER: &str =
    r#"{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20}}}"#;

struct Server {
    base: String,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
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
";

async fn wait_ready(base: &str, child: &mut Child, name: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} not ready in 60 s");
}

async fn start_axon(dir: &Path) -> Server {
    let port = free_port();
    let config = dir.join("axon.yaml");
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
{LIMITS}",
            db = dir.join("axon.db").display(),
            media = dir.join("axon-media").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_axon"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("axon starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child, "axon").await;
    Server { base, child }
}

/// The Python of a virtualenv with Synapse 1.163, made on first use.
fn synapse_python() -> PathBuf {
    let venv = std::env::var_os("AXON_BENCH_SYNAPSE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-synapse"));
    let python = venv.join("bin/python");
    let has_synapse = |python: &Path| {
        Command::new(python)
            .args(["-c", "import synapse"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_synapse(&python) {
        eprintln!("installing Synapse 1.163 into {}", venv.display());
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv");
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "matrix-synapse==1.163.*"])
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "pip install matrix-synapse"
        );
    }
    python
}

async fn start_synapse(dir: &Path) -> Server {
    let python = synapse_python();
    let port = free_port();
    let config = dir.join("synapse.yaml");
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
{LIMITS}",
            dir = dir.display(),
        ),
    )
    .unwrap();
    let keys = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .status();
    assert!(keys.is_ok_and(|s| s.success()), "synapse --generate-keys");
    let log = std::fs::File::create(dir.join("synapse.log")).unwrap();
    let mut child = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("synapse starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child, "synapse").await;
    Server { base, child }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/_matrix/client/v3{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

fn enc(s: &str) -> String {
    s.replace('!', "%21")
        .replace(':', "%3A")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Client {
    let url = format!("{base}/_matrix/client/v3/register");
    let body = json!({ "username": name, "password": "bench-password", "auth": { "type": "m.login.dummy" } });
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

struct Figures {
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    missing: usize,
    put_p50_ms: f64,
    cpu_seconds: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    answers_per_message_per_member: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn fanout(server: &Server, members: usize) -> Figures {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(members + 8)
        .build()
        .unwrap();
    let tag = format!("m{members}");
    let sender = register(&http, &server.base, &format!("sender{tag}")).await;
    let room = sender
        .call(
            reqwest::Method::POST,
            "/createRoom",
            Some(json!({ "preset": "public_chat" })),
        )
        .await["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Members register and join a few at a time, as people do.
    let mut clients = Vec::new();
    for chunk in (0..members).collect::<Vec<_>>().chunks(4) {
        let joined = chunk.iter().map(|i| {
            let (http, base, room, name) = (
                http.clone(),
                server.base.clone(),
                room.clone(),
                format!("u{tag}x{i}"),
            );
            async move {
                let client = register(&http, &base, &name).await;
                client
                    .call(
                        reqwest::Method::POST,
                        &format!("/rooms/{}/join", enc(&room)),
                        Some(json!({})),
                    )
                    .await;
                client
            }
        });
        clients.extend(futures_join(joined).await);
    }
    let filter = enc(LAZY_FILTER);
    // Every member syncs once, then long-polls; each records when it saw
    // each message and how many answers it got.
    let received: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let gapped = Arc::new(Mutex::new(0usize));
    let answers = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sinces = Vec::new();
    for client in &clients {
        let first = client
            .call(
                reqwest::Method::GET,
                &format!("/sync?filter={filter}"),
                None,
            )
            .await;
        sinces.push(first["next_batch"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(server.pid());
    let mut polls = Vec::new();
    for (client, mut since) in clients.iter().cloned().zip(sinces) {
        let (received, gapped, answers, stop, room, filter) = (
            received.clone(),
            gapped.clone(),
            answers.clone(),
            stop.clone(),
            room.clone(),
            filter.clone(),
        );
        polls.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/sync?filter={filter}&timeout=30000&since={since}");
                let body = client.call(reqwest::Method::GET, &path, None).await;
                let now = Instant::now();
                *answers.lock().unwrap() += 1;
                since = body["next_batch"].as_str().unwrap().to_string();
                let timeline = &body["rooms"]["join"][&room]["timeline"];
                if timeline["limited"] == true {
                    *gapped.lock().unwrap() += 1;
                }
                let mut seen = received.lock().unwrap();
                for event in timeline["events"].as_array().into_iter().flatten() {
                    if event["type"] == "m.room.message" {
                        let id = event["event_id"].as_str().unwrap_or("").to_string();
                        seen.entry(id).or_default().push(now);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers_before = *answers.lock().unwrap();
    let cpu_before = cpu_seconds(server.pid());
    let mut sent = Vec::new();
    let mut put_ms = Vec::new();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let due = started + Duration::from_millis(i as u64 * 1000 / RATE_PER_SECOND);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let asked = Instant::now();
        let path = format!("/rooms/{}/send/m.room.message/{tag}-{i}", enc(&room));
        let body = json!({ "msgtype": "m.text", "body": format!("fan-out {i}") });
        let answer = sender.call(reqwest::Method::PUT, &path, Some(body)).await;
        let answered = Instant::now();
        put_ms.push((answered - asked).as_secs_f64() * 1000.0);
        sent.push((answer["event_id"].as_str().unwrap().to_string(), answered));
    }
    // Until every member has every message, or 20 s after the last.
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let complete = {
            let seen = received.lock().unwrap();
            sent.iter()
                .all(|(id, _)| seen.get(id).is_some_and(|v| v.len() >= members))
        };
        if complete || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let answers_during = *answers.lock().unwrap() - answers_before;
    let rss_after = rss_mib(server.pid());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poll in polls {
        poll.abort();
    }
    let seen = received.lock().unwrap();
    let mut latencies = Vec::new();
    let mut missing = 0;
    for (id, answered) in &sent {
        let times = seen.get(id).cloned().unwrap_or_default();
        missing += members.saturating_sub(times.len());
        latencies.extend(
            times
                .iter()
                .map(|t| t.saturating_duration_since(*answered).as_secs_f64() * 1000.0),
        );
    }
    latencies.sort_by(f64::total_cmp);
    put_ms.sort_by(f64::total_cmp);
    let gapped = *gapped.lock().unwrap();
    Figures {
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        missing: missing + gapped,
        put_p50_ms: percentile(&put_ms, 0.5),
        cpu_seconds: cpu,
        rss_before_mib: rss_before,
        rss_after_mib: rss_after,
        answers_per_message_per_member: answers_during as f64 / (MESSAGES * members) as f64,
    }
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let pinned: Vec<_> = futures.map(Box::pin).collect();
    for f in pinned {
        out.push(f.await);
    }
    out
}

fn row(name: &str, axon: f64, synapse: Option<f64>, unit: &str) {
    match synapse {
        Some(s) => println!(
            "  {name:<44} {axon:>10.2} {unit:<4} {s:>10.2} {unit:<4} ratio {:>7.3}",
            axon / s
        ),
        None => println!("  {name:<44} {axon:>10.2} {unit}"),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let axon_only = args.iter().any(|a| a == "--axon-only");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![100, 300];
    }
    for members in sizes {
        let dir = tempfile::tempdir().unwrap();
        let axon = start_axon(dir.path()).await;
        let a = fanout(&axon, members).await;
        drop(axon);
        let s = if axon_only {
            None
        } else {
            let synapse = start_synapse(dir.path()).await;
            let figures = fanout(&synapse, members).await;
            drop(synapse);
            Some(figures)
        };
        println!("fan-out, {members} members, {MESSAGES} messages at {RATE_PER_SECOND}/s:        Axon             Synapse");
        let f = |pick: fn(&Figures) -> f64| (pick(&a), s.as_ref().map(pick));
        let (x, y) = f(|f| f.latency_p50_ms);
        row("delivery latency p50", x, y, "ms");
        let (x, y) = f(|f| f.latency_p99_ms);
        row("delivery latency p99", x, y, "ms");
        let (x, y) = f(|f| f.missing as f64);
        row("deliveries missing or behind a gap", x, y, "");
        let (x, y) = f(|f| f.put_p50_ms);
        row("PUT /send p50", x, y, "ms");
        let (x, y) = f(|f| f.cpu_seconds);
        row("server CPU, send phase", x, y, "s");
        let (x, y) = f(|f| f.rss_before_mib);
        row("RSS, members joined and waiting", x, y, "MiB");
        let (x, y) = f(|f| f.rss_after_mib);
        row("RSS, after the messages", x, y, "MiB");
        let (x, y) = f(|f| f.answers_per_message_per_member);
        row("/sync answers per message per member", x, y, "");
    }
}
