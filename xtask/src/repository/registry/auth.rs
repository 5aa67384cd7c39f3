//! Who a registry is told we are: the `Authorization` value that last worked for each repository
//! scope, and the answer to a 401 challenge: Basic credentials, or a Bearer token fetched from the
//! realm the registry names. Credentials come from the Docker configuration (a credential helper
//! the user configured wins) and else from a token source injected for the host (ECR's
//! `GetAuthorizationToken`, wired in `store`), cached until shortly before it expires.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::Url;
use tokio::sync::{Mutex, RwLock};

use super::transport::{describe_transport_error, Transport, SMALL_BODY_LIMIT};

/// Credentials a token source minted, and when to mint new ones.
pub struct Minted {
    pub user: String,
    pub password: String,
    pub refresh_at: SystemTime,
}

pub type MintFuture = Pin<Box<dyn Future<Output = Result<Minted>> + Send>>;

/// Mints credentials for one registry host when the Docker configuration has none.
pub type TokenSource = Arc<dyn Fn() -> MintFuture + Send + Sync>;

pub struct Auth {
    host: String,
    token_source: Option<TokenSource>,
    minted: Mutex<Option<Minted>>,
    /// The `Authorization` value that last worked, per repository scope.
    authorization: RwLock<HashMap<String, HeaderValue>>,
    /// Held while answering a challenge, so parallel requests that all met a 401 fetch one
    /// token between them.
    authenticating: Mutex<()>,
}

impl Auth {
    pub fn new(host: &str, token_source: Option<TokenSource>) -> Auth {
        Auth {
            host: host.to_string(),
            token_source,
            minted: Mutex::new(None),
            authorization: RwLock::new(HashMap::new()),
            authenticating: Mutex::new(()),
        }
    }

    pub async fn current(&self, repository: &str) -> Option<HeaderValue> {
        self.authorization.read().await.get(repository).cloned()
    }

    /// Answers a 401 challenge (`WWW-Authenticate`) for `repository`; `rejected` is the value the
    /// registry refused, if any, so a minted token is renewed.
    pub async fn answer(&self, transport: &Transport, challenge: &str, repository: &str, rejected: Option<&HeaderValue>) -> Result<()> {
        let _one_at_a_time = self.authenticating.lock().await;
        if self.authorization.read().await.get(repository) != rejected {
            // Another request answered the challenge while this one waited.
            return Ok(());
        }
        let credential = self.credential(rejected.is_some()).await?;
        let mut value = if challenge.to_ascii_lowercase().starts_with("bearer") {
            self.bearer_token(transport, challenge, repository, credential).await?
        } else {
            let Some((user, password)) = credential else {
                bail!(
                    "registry {} requires authentication for {repository} and no credentials for it were found: run `docker login {}` or add an `auths` entry for {} to $DOCKER_CONFIG/config.json (default ~/.docker/config.json)",
                    self.host, self.host, self.host
                );
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {encoded}"))?
        };
        value.set_sensitive(true);
        self.authorization.write().await.insert(repository.to_string(), value);
        Ok(())
    }

    /// A token from the realm of a Bearer challenge. The realm gets the registry's credentials
    /// only over https (or on loopback, or for a host in XTASK_INSECURE_REGISTRIES).
    async fn bearer_token(
        &self,
        transport: &Transport,
        challenge: &str,
        repository: &str,
        credential: Option<(String, String)>,
    ) -> Result<HeaderValue> {
        let params = challenge_params(&challenge["bearer".len()..]);
        let realm = params.get("realm").ok_or_else(|| anyhow!("registry {} sent a Bearer challenge without a realm", self.host))?;
        let mut url = Url::parse(realm).with_context(|| format!("registry {} sent a Bearer challenge with an invalid realm", self.host))?;
        if credential.is_some() && url.scheme() != "https" && !Transport::may_use_plain_http(&url) {
            bail!(
                "registry {} names the token service {realm}, which is not https, and the credentials for {} would cross the network in the clear; refused: serve the token service over https, or list its host in XTASK_INSECURE_REGISTRIES if it is trusted",
                self.host,
                self.host
            );
        }
        url.query_pairs_mut().append_pair("scope", &format!("repository:{repository}:pull,push"));
        if let Some(service) = params.get("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        let mut token_request = transport.http.get(url);
        if let Some((user, password)) = &credential {
            token_request = token_request.basic_auth(user, Some(password));
        }
        let token_response = token_request.send().await.map_err(|err| describe_transport_error(err, realm))?;
        if !token_response.status().is_success() {
            bail!("the token service {realm} of registry {} refused a token for {repository} ({}): check the credentials for {} in $DOCKER_CONFIG/config.json", self.host, token_response.status(), self.host);
        }
        let body = transport.read_capped(token_response, SMALL_BODY_LIMIT, "a token").await?;
        let body: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("the token service {realm} answered with invalid JSON"))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| anyhow!("the token service {realm} answered without a token"))?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
    }

    /// The user and password for this host: what the Docker configuration holds, else what the
    /// token source mints. `renew` replaces a minted token the registry has just refused.
    async fn credential(&self, renew: bool) -> Result<Option<(String, String)>> {
        if let Some(found) = self.docker_credential().await? {
            return Ok(Some(found));
        }
        let Some(source) = &self.token_source else { return Ok(None) };
        let mut minted = self.minted.lock().await;
        let fresh = minted.as_ref().is_some_and(|token| !renew && SystemTime::now() < token.refresh_at);
        if !fresh {
            *minted = Some(source().await?);
        }
        Ok(minted.as_ref().map(|token| (token.user.clone(), token.password.clone())))
    }

    async fn docker_credential(&self) -> Result<Option<(String, String)>> {
        // `docker login` keeps Docker Hub's credentials under its index server's address.
        let host = match self.host.as_str() {
            crate::image::reference::DOCKER_HUB => "https://index.docker.io/v1/".to_string(),
            host => host.to_string(),
        };
        let lookup = tokio::task::spawn_blocking(move || docker_credential::get_credential(&host)).await?;
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        match lookup {
            Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some((user, password))),
            Ok(DockerCredential::IdentityToken(token)) => Ok(Some(("<token>".to_string(), token))),
            Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => Ok(None),
            Err(E::HelperFailure { helper, .. }) => bail!("the Docker credential helper `{helper}` failed for {}: run it by hand (`echo {} | docker-credential-{helper} get`) to see why", self.host, self.host),
            // The other errors' texts carry no secret, only what went wrong.
            Err(err) => bail!("cannot read the credentials for {} from the Docker configuration: {err}", self.host),
        }
    }
}

fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches(',').trim();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_parameters() {
        let params = challenge_params(r#" realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#);
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull");
    }
}
