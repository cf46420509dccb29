//! Servers that federate on loopback: each named `127.0.0.1:PORT`, with a
//! TLS federation listener on that port holding a certificate from one
//! test CA, which every server trusts (`federation_custom_ca_list`), and
//! loopback allowed (`federation_ip_range_blacklist: []`).

use crate::tls::{free_port, TestCa};
use crate::TestServer;

pub struct Federation {
    pub ca: TestCa,
    /// Holds the CA and the certificates.
    _dir: tempfile::TempDir,
    issued: std::sync::atomic::AtomicUsize,
}

impl Default for Federation {
    fn default() -> Self {
        Self::new()
    }
}

impl Federation {
    pub fn new() -> Federation {
        let dir = tempfile::tempdir().expect("temporary directory");
        Federation {
            ca: TestCa::new(dir.path()),
            _dir: dir,
            issued: Default::default(),
        }
    }

    /// The config of an Axon server of this federation on `port`, with
    /// `extra` YAML on top.
    pub fn axon_config(&self, port: u16, extra: &str) -> String {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let issued = self.ca.issue(&format!("axon{n}"));
        let base = format!(
            "server_name: '127.0.0.1:{port}'
listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
  - port: {port}
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [federation]}}]
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_custom_ca_list: [{ca}]
federation_ip_range_blacklist: []",
            cert = issued.certificate.display(),
            key = issued.key.display(),
            ca = self.ca.certificate.display(),
        );
        crate::merged(&base, extra)
    }

    /// An Axon server of this federation.
    pub async fn axon(&self, extra: &str) -> TestServer {
        TestServer::start_with(&self.axon_config(free_port(), extra)).await
    }
}
