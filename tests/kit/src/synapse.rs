//! Synapse itself as the federation peer: Synapse 1.163 from PyPI, in a
//! virtualenv (`.ci/run` makes it; made here on first use otherwise), on
//! 127.0.0.1 with SQLite, named `127.0.0.1:PORT`, with a certificate from
//! the federation's test CA and trusting that CA
//! (`federation_custom_ca_list`), loopback allowed
//! (`federation_ip_range_blacklist: []`) and no key servers
//! (`trusted_key_servers: []`).

use crate::federation::Federation;
use crate::tls::{free_port, Issued};
use crate::TestServer;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Python of the virtualenv that has Synapse: `AXON_SYNAPSE_VENV`,
/// or `target/synapse` of the workspace; installed there if it is not.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("AXON_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/synapse"));
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
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv {}",
            venv.display()
        );
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

/// A running Synapse.
pub struct Synapse {
    name: String,
    base: String,
    pub dir: PathBuf,
}

/// Runs Synapse's homeserver with the parent-death signal set, so that a
/// test binary that is killed takes its Synapse with it.
const LAUNCHER: &str = "
import ctypes, runpy, signal, sys
ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)
sys.argv = ['synapse.app.homeserver'] + sys.argv[1:]
runpy.run_module('synapse.app.homeserver', run_name='__main__')
";

impl Synapse {
    /// Starts Synapse on `port` in `dir` with the certificate `issued` by
    /// the CA at `ca`, and waits until it answers. Blocking; the thread
    /// that calls it must outlive the Synapse (see [`shared`]).
    fn start(ca: &Path, issued: &Issued, port: u16, dir: &Path) -> (Synapse, Child) {
        std::fs::create_dir_all(dir).unwrap();
        let client_port = free_port();
        let config = dir.join("homeserver.yaml");
        std::fs::write(
            &config,
            format!(
                "server_name: '127.0.0.1:{port}'
pid_file: {dir}/homeserver.pid
report_stats: false
listeners:
  - port: {port}
    tls: true
    type: http
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [client, federation], compress: false}}]
  - port: {client_port}
    tls: false
    type: http
    x_forwarded: false
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [client], compress: false}}]
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_custom_ca_list: [{ca}]
federation_ip_range_blacklist: []
ip_range_blacklist: []
trusted_key_servers: []
suppress_key_server_warning: true
federation:
  destination_min_retry_interval: 1s
  destination_max_retry_interval: 4s
database: {{name: sqlite3, args: {{database: {dir}/homeserver.db}}}}
media_store_path: {dir}/media
signing_key_path: {dir}/signing.key
log_config: {dir}/log.yaml
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: test-shared-secret
bcrypt_rounds: 4
presence: {{enabled: false}}
allow_public_rooms_over_federation: true
room_list_publication_rules: [{{action: allow}}]
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}
rc_invites: {{per_room: {{per_second: 1000, burst_count: 1000}}, per_user: {{per_second: 1000, burst_count: 1000}}, per_issuer: {{per_second: 1000, burst_count: 1000}}}}
rc_login: {{address: {{per_second: 1000, burst_count: 1000}}, account: {{per_second: 1000, burst_count: 1000}}, failed_attempts: {{per_second: 1000, burst_count: 1000}}}}
rc_federation: {{window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}}
",
                dir = dir.display(),
                cert = issued.certificate.display(),
                key = issued.key.display(),
                ca = ca.display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("log.yaml"),
            format!(
                "version: 1
formatters: {{precise: {{format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}}}
handlers:
  file: {{class: logging.FileHandler, formatter: precise, filename: {dir}/homeserver.log}}
root: {{level: INFO, handlers: [file]}}
disable_existing_loggers: false
",
                dir = dir.display()
            ),
        )
        .unwrap();
        let python = python();
        let keys = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .status();
        assert!(keys.is_ok_and(|s| s.success()), "synapse --generate-keys");
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(LAUNCHER)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("synapse starts");
        let started = Instant::now();
        while !health(client_port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Synapse exited ({status}) during start-up:\n{}",
                    tail(&dir.join("stderr.log"))
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "Synapse did not answer within 180 s:\n{}",
                tail(&dir.join("homeserver.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let synapse = Synapse {
            name: format!("127.0.0.1:{port}"),
            base: format!("http://127.0.0.1:{client_port}"),
            dir: dir.to_path_buf(),
        };
        (synapse, child)
    }

    /// The server's name, `127.0.0.1:PORT`.
    pub fn server_name(&self) -> String {
        self.name.clone()
    }

    /// A client of its client API (plain HTTP), for the calling test: an
    /// HTTP client's connections belong to the runtime that made them.
    pub fn client(&self) -> TestServer {
        TestServer::remote(self.base.clone(), self.name.clone())
    }

    /// The end of Synapse's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("homeserver.log"))
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether Synapse's `/health` answers `OK` on `port`.
fn health(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

static SHARED: OnceLock<(Federation, Synapse)> = OnceLock::new();

/// The shared Synapse, if a test started it.
pub fn started() -> Option<&'static Synapse> {
    SHARED.get().map(|(_, synapse)| synapse)
}

/// One federation and one Synapse in it for the whole test binary:
/// starting Synapse takes seconds, and tests keep apart by their users'
/// and rooms' names. Its process ends with the test binary.
pub fn shared() -> &'static (Federation, Synapse) {
    SHARED.get_or_init(|| {
        let federation = Federation::new();
        let dir = tempfile::Builder::new()
            .prefix("axon-synapse")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let port = free_port();
        let issued = federation.ca.issue(&format!("synapse{port}"));
        let ca = federation.ca.certificate.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        // The parent-death signal goes when the thread that started the
        // process ends: this one lives as long as the test binary.
        std::thread::spawn(move || {
            let (synapse, mut child) = Synapse::start(&ca, &issued, port, &dir);
            sender.send(synapse).unwrap();
            let _ = child.wait();
        });
        let synapse = receiver.recv().expect("Synapse starts");
        (federation, synapse)
    })
}
