//! The REST API's HTTP client: bearer auth, and the API's own error
//! message shown when a call fails.

use anyhow::{Context as _, bail};
use control_plane::error::ErrorBody;
use serde::de::DeserializeOwned;

/// A client of the REST API.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) server: String,
    pub(super) token: Option<String>,
}

impl Client {
    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends and decodes; an API error is shown with the API's own message.
    pub(super) async fn send<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<Option<T>> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("cannot reach the Okra API at {}", self.server))?;
        self.decode(response).await
    }

    /// Decodes an answer; an API error is shown with the API's own message.
    pub(super) async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> anyhow::Result<Option<T>> {
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            if let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) {
                bail!("{} ({status}, {})", body.error.message, body.error.code);
            }
            bail!(
                "the API answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("decoding the API's answer")?,
        ))
    }
}
