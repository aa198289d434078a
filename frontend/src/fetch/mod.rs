//! Fetching a URL a client named, from the server (an `image_url` the
//! Ollama adapter must inline; later the local engine's image input),
//! without handing the client a way into the gateway's network (SSRF).
//!
//! The rules, all in [`SafeFetcher::fetch`]:
//! - off unless configured (`general_settings.image_url_fetch.enabled`);
//!   [`SafeFetcher::disabled`] refuses every URL;
//! - `http` and `https` only, no proxy, no cookies;
//! - every address connected to is public ([`address`]) or in the
//!   operator's `allow_networks`: an IP literal is checked before the
//!   request, a name when it is resolved (`resolver`, so the connect goes
//!   to the checked address), and both again at every redirect, which the
//!   fetcher follows itself (at most `max_redirects`);
//! - the whole fetch, redirects and body included, has one deadline
//!   (`timeout`), and the body is read up to `max_bytes`, no further;
//! - errors say what rule refused, never the body or the resolved address
//!   (those go to the log).

pub mod address;
mod resolver;

pub use resolver::{HostResolver, SystemResolver};

use address::AddressRules;
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest body fetched by default: 20 MiB, OpenAI's image size limit.
pub const DEFAULT_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Default deadline of one whole fetch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of redirects followed.
pub const DEFAULT_MAX_REDIRECTS: u32 = 3;

/// `general_settings.image_url_fetch` in the config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FetchSettings {
    /// Fetch remote image URLs at all (default false: only `data:` URLs).
    #[serde(default)]
    pub enabled: bool,
    /// Largest body, in bytes (default [`DEFAULT_MAX_BYTES`]).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Seconds one fetch may take, redirects included (default 10).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Redirects followed (default 3).
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// Networks that may be fetched from although they are not public
    /// (`10.1.2.0/24`, `fd00::/8`): an internal image server.
    #[serde(default)]
    pub allow_networks: Vec<IpNet>,
}

/// Why a URL was not fetched; the message is safe to show the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Fetching is turned off.
    #[error(
        "this gateway does not fetch remote URLs; send the image inline as a data: URL \
         (an operator can allow fetching with general_settings.image_url_fetch)"
    )]
    Disabled,
    /// Not a URL.
    #[error("the URL is not valid")]
    InvalidUrl,
    /// Not `http` or `https`.
    #[error("only http and https URLs can be fetched")]
    Scheme,
    /// The host is, or resolves to, an address the rules refuse.
    #[error(
        "the URL's host is not allowed: it is or resolves to a loopback, private, \
         link-local or otherwise non-public address"
    )]
    Refused,
    /// Too many redirects, or one without a usable `Location`.
    #[error("the URL redirected too often or to an invalid location (at most {max} redirects)")]
    Redirects {
        /// The configured maximum.
        max: u32,
    },
    /// The body is larger than allowed.
    #[error("the resource is larger than {limit} bytes")]
    TooLarge {
        /// The configured maximum.
        limit: u64,
    },
    /// The deadline passed.
    #[error("the fetch took longer than its time limit of {secs} s")]
    Timeout {
        /// The configured deadline.
        secs: f64,
    },
    /// The server answered with an error status (its body is not kept).
    #[error("the server answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The connection failed (refused, reset, TLS).
    #[error("the server could not be reached")]
    Unreachable,
    /// The HTTP client could not be built (startup).
    #[error("cannot build the fetch client: {message}")]
    Setup {
        /// reqwest's reason.
        message: String,
    },
}

/// A fetched body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// At most `max_bytes` of it.
    pub bytes: Bytes,
    /// The `Content-Type` the server sent, if any.
    pub content_type: Option<String>,
}

/// The fetcher; cheap to share behind an `Arc`.
pub struct SafeFetcher {
    on: Option<Enabled>,
}

struct Enabled {
    client: reqwest::Client,
    rules: Arc<AddressRules>,
    max_bytes: u64,
    timeout: Duration,
    max_redirects: u32,
}

impl SafeFetcher {
    /// A fetcher that refuses every URL (the default).
    pub fn disabled() -> Self {
        Self { on: None }
    }

    /// The fetcher `settings` describe, resolving names with the system
    /// resolver.
    pub fn new(settings: Option<&FetchSettings>) -> Result<Self, FetchError> {
        Self::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// [`Self::new`] with names resolved by `hosts` (tests map names to
    /// the addresses they need).
    pub fn with_resolver(
        settings: Option<&FetchSettings>,
        hosts: Arc<dyn HostResolver>,
    ) -> Result<Self, FetchError> {
        let Some(settings) = settings.filter(|s| s.enabled) else {
            return Ok(Self::disabled());
        };
        let rules = Arc::new(AddressRules::new(settings.allow_networks.clone()));
        let timeout = settings
            .timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver::CheckedResolver {
                hosts,
                rules: Arc::clone(&rules),
            }))
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("engine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Setup {
                message: e.to_string(),
            })?;
        Ok(Self {
            on: Some(Enabled {
                client,
                rules,
                max_bytes: settings.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                timeout,
                max_redirects: settings.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            }),
        })
    }

    /// Whether this fetcher fetches at all.
    pub fn is_enabled(&self) -> bool {
        self.on.is_some()
    }

    /// The body at `url`, under every rule of the module docs.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let Some(on) = &self.on else {
            return Err(FetchError::Disabled);
        };
        match tokio::time::timeout(on.timeout, on.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(on.timed_out()),
        }
    }
}

impl Enabled {
    async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut url = Url::parse(url).map_err(|_| FetchError::InvalidUrl)?;
        for _ in 0..=self.max_redirects {
            self.check(&url)?;
            let resp = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| self.send_error(&e))?;
            let status = resp.status();
            if is_followed_redirect(status) {
                url = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or(FetchError::Redirects {
                        max: self.max_redirects,
                    })?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    status: status.as_u16(),
                });
            }
            return self.body(resp).await;
        }
        Err(FetchError::Redirects {
            max: self.max_redirects,
        })
    }

    /// The checks made before each request: the scheme, and an IP
    /// literal's address (reqwest resolves no literal, so the resolver
    /// never sees one).
    fn check(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Scheme);
        }
        let ip = match url.host() {
            None => return Err(FetchError::InvalidUrl),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(ip)) => ip.into(),
            Some(url::Host::Ipv6(ip)) => ip.into(),
        };
        if self.rules.allows(ip) {
            Ok(())
        } else {
            tracing::warn!(address = %ip, "fetch refused: a non-public address");
            Err(FetchError::Refused)
        }
    }

    /// Reads the body up to `max_bytes`.
    async fn body(&self, mut resp: reqwest::Response) -> Result<Fetched, FetchError> {
        let too_large = FetchError::TooLarge {
            limit: self.max_bytes,
        };
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.send_error(&e))? {
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes: bytes.freeze(),
            content_type,
        })
    }

    /// A failed request: refused by the resolver, timed out, or anything
    /// else (logged, shown as unreachable).
    fn send_error(&self, e: &reqwest::Error) -> FetchError {
        if is_refused(e) {
            return FetchError::Refused;
        }
        if e.is_timeout() {
            return self.timed_out();
        }
        tracing::warn!(error = %e, "fetch failed");
        FetchError::Unreachable
    }

    fn timed_out(&self) -> FetchError {
        FetchError::Timeout {
            secs: self.timeout.as_secs_f64(),
        }
    }
}

/// The redirect statuses that carry a `Location` to follow.
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Whether the resolver's refusal is in `e`'s chain of causes.
fn is_refused(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<resolver::RefusedAddress>() {
            return true;
        }
        cause = c.source();
    }
    false
}
