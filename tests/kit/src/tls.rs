//! A certificate authority made for one test run, with openssl: the
//! federation tests give each server a certificate from it and make every
//! server trust it (`federation_custom_ca_list`), as a private federation
//! would.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    dir: PathBuf,
    pub certificate: PathBuf,
    key: PathBuf,
}

/// One server's certificate and key, PEM files.
pub struct Issued {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

impl TestCa {
    /// A new CA in `dir`.
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        let certificate = dir.join("ca.crt");
        let key = dir.join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            text(&key),
            "-out",
            text(&certificate),
            "-days",
            "2",
            "-subj",
            "/CN=Axon test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        TestCa {
            dir: dir.to_path_buf(),
            certificate,
            key,
        }
    }

    /// A certificate for 127.0.0.1 and localhost, named `name`.
    pub fn issue(&self, name: &str) -> Issued {
        let key = self.dir.join(format!("{name}.key"));
        let request = self.dir.join(format!("{name}.csr"));
        let certificate = self.dir.join(format!("{name}.crt"));
        let extensions = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            text(&key),
            "-out",
            text(&request),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            text(&request),
            "-CA",
            text(&self.certificate),
            "-CAkey",
            text(&self.key),
            "-CAcreateserial",
            "-out",
            text(&certificate),
            "-days",
            "2",
            "-extfile",
            text(&extensions),
        ]);
        Issued { certificate, key }
    }

    /// An HTTPS client that trusts this CA only.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.certificate).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap()
    }
}

/// A loopback port free now (for configs that must name their port, such
/// as a server named `127.0.0.1:PORT`). Taken below the kernel's
/// ephemeral range (32768 and up), where the outgoing connections of
/// tests running alongside cannot take it before its server binds it;
/// each test process starts at its own offset.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() * 97) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free loopback port below 32768");
        let port = (LOW + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
