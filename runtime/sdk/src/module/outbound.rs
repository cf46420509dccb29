//! Reaching out: an HTTP client for modules (an antispam service, an
//! identity check). Mail goes through the server (`ModuleApi::send_mail`).

use super::api::ModuleApi;
use crate::error::{ErrCode, ModuleError};
use std::time::Duration;

/// Outbound HTTP for modules, with a timeout on every request (default 30 s).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

fn failed(url: &str, e: reqwest::Error) -> ModuleError {
    let status = if e.is_timeout() { 504 } else { 502 };
    ModuleError::new(
        status,
        ErrCode::Unknown,
        format!("request to {url} failed: {e}"),
    )
}

impl HttpClient {
    fn new(timeout: Duration) -> HttpClient {
        let client = reqwest::Client::builder()
            .user_agent(concat!("Axon/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        HttpClient { client, timeout }
    }

    /// The same client with another timeout per request.
    pub fn with_timeout(&self, timeout: Duration) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            timeout,
        }
    }

    /// GET `url` and parse the JSON answer; a non-2xx status is an error.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, ModuleError> {
        self.send_json(url, self.client.get(url)).await
    }

    /// POST `body` as JSON to `url` and parse the JSON answer.
    pub async fn post_json_get_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ModuleError> {
        self.send_json(url, self.client.post(url).json(body)).await
    }

    async fn send_json(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, ModuleError> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| failed(url, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ModuleError::new(
                502,
                ErrCode::Unknown,
                format!("request to {url} answered {status}"),
            ));
        }
        response.json().await.map_err(|e| failed(url, e))
    }

    /// The underlying reqwest client, for anything else.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl ModuleApi {
    /// An HTTP client with a 30 s timeout per request.
    ///
    /// ```no_run
    /// # async fn demo(api: &axon::module::ModuleApi) -> Result<(), axon::ModuleError> {
    /// let verdict = api
    ///     .http_client()
    ///     .with_timeout(std::time::Duration::from_secs(2))
    ///     .post_json_get_json("http://antispam.internal/check", &serde_json::json!({ "user": "@a:b" }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn http_client(&self) -> HttpClient {
        HttpClient::new(Duration::from_secs(30))
    }
}
