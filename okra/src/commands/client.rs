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
        self.decode(self.dispatch(builder).await?).await
    }

    /// Decodes an answer; an API error is shown with the API's own message.
    pub(super) async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> anyhow::Result<Option<T>> {
        let bytes = Self::raw(response).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("decoding the API's answer")?,
        ))
    }

    /// Sends and answers the body's bytes as they are (a key-value value).
    pub(super) async fn send_raw(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<Vec<u8>> {
        Self::raw(self.dispatch(builder).await?).await
    }

    /// Sends; failing to reach the API is an error naming it.
    async fn dispatch(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        builder
            .send()
            .await
            .with_context(|| format!("cannot reach the Okra API at {}", self.server))
    }

    /// A successful answer's body; an API error is shown with the API's own
    /// message.
    async fn raw(response: reqwest::Response) -> anyhow::Result<Vec<u8>> {
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
        Ok(bytes.to_vec())
    }
}
