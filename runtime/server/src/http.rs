//! Serving HTTP with limits: a connection must send its request head within
//! `header_timeout` (which also ends an idle keep-alive connection), its body
//! with no gap longer than `body_timeout`, and at most `max_connections` are
//! served at once — never more than the process's file descriptors allow —
//! so a client that opens connections and sends nothing cannot starve the
//! others. Past the cap the server stops accepting until a connection ends;
//! new ones wait in the kernel's backlog.

use crate::config::HttpLimits;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The longest gap allowed between two chunks of a request body, for the
/// extractors that read bodies.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub std::time::Duration);

/// Descriptors kept back from the cap, for the database, log files and
/// outbound connections.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The connection cap: the configured one, within the descriptor limit.
pub fn connection_cap(limits: &HttpLimits) -> usize {
    let descriptors = descriptor_limit().unwrap_or(u64::MAX);
    let room = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    (limits.max_connections as u64).min(room) as usize
}

fn descriptor_limit() -> Option<u64> {
    // `Max open files  1024  4096  files` in /proc/self/limits.
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The TLS side of `tls: true` listeners: the certificate chain and key of
/// `tls_certificate_path` and `tls_private_key_path` (PEM, as Synapse
/// reads them), HTTP/1.1 only.
pub fn tls_acceptor(
    certificate: &std::path::Path,
    private_key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_certificate_path: {}: {e}", certificate.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_certificate_path: {} holds no PEM certificate",
            certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| format!("tls_private_key_path: {}: {e}", private_key.display()))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "tls_private_key_path: {} does not go with tls_certificate_path: {e}",
                private_key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (through TLS when `tls` is given) until
/// `shutdown` turns true, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    connections: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or similar: wait a little rather
                    // than spin, and go on.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let _ = stream.set_nodelay(true);
        // The extensions wrap the router as one service: `Router::layer`
        // would wrap each of its routes again, for every connection.
        let service = tower::ServiceBuilder::new()
            .layer(axum::Extension(ConnectInfo(peer)))
            .layer(axum::Extension(BodyTimeout(limits.body_timeout.0)))
            .map_request(|request: hyper::Request<Incoming>| request.map(Body::new))
            .service(app.clone());
        let service = TowerToHyperService::new(service);
        let shutdown = shutdown.clone();
        let closed_rx = closed_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, service, limits, shutdown).await,
                // The handshake is part of the request head's time.
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout.0, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => serve_connection(stream, service, limits, shutdown).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
            drop(permit);
            drop(closed_rx);
        });
    }
    drop(closed_rx);
    // In-flight connections end (their requests answered) before this returns.
    closed_tx.closed().await;
    Ok(())
}

/// Serves one connection's requests until it closes or the server stops.
async fn serve_connection<S, T>(
    stream: S,
    service: TowerToHyperService<T>,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tower::Service<hyper::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.0)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
