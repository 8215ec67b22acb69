//! Outbound fetches of issuers' discovery documents and keys. Any user may point a provider at
//! any URL, so a fetch goes only where an outside server would be: https to public addresses
//! (plain http, or a private address, only to this server or to hosts an admin allow-lists),
//! the addresses checked after resolution and the connection pinned to them (no DNS
//! rebinding in between), no redirect off the URL's origin, bounded in size and time, and
//! errors that never carry what the target answered (details go to the server log).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use url::Url;

/// The whole of one fetch: connection, redirects and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_REDIRECTS: usize = 3;
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A host (and optionally one port) an admin allows fetches to over plain http or at a
/// private address: `HOST[:PORT]` (`--oidc-fetch-allow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not HOST or HOST:PORT (e.g. issuer.internal:8443 or 10.0.0.5)")]
pub struct BadAllowedHost(String);

impl FromStr for AllowedHost {
    type Err = BadAllowedHost;

    fn from_str(text: &str) -> Result<Self, BadAllowedHost> {
        let bad = || BadAllowedHost(text.to_owned());
        // A scheme without a default port, so an explicit `:80` or `:443` stays explicit.
        let url =
            Url::parse(&format!("x://{}", text.trim().to_ascii_lowercase())).map_err(|_| bad())?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path().is_empty()
            && url.query().is_none()
            && url.fragment().is_none();
        if !bare {
            return Err(bad());
        }
        Ok(AllowedHost {
            host: host.to_owned(),
            port: url.port(),
        })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Why a URL is not fetched at all (decided before any connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAUrl,
    NotHttps,
    NotPublic,
    DoesNotResolve,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotAUrl => "it is not an http(s) URL with a host",
            Refusal::NotHttps => {
                "plain http is fetched only from this server and from hosts the server's \
                 --oidc-fetch-allow lists; use https"
            }
            Refusal::NotPublic => {
                "it is a loopback, private, link-local or otherwise non-public address, which \
                 is fetched only from hosts the server's --oidc-fetch-allow lists"
            }
            Refusal::DoesNotResolve => "its host name does not resolve",
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is not fetched: {reason}")]
    Refused { url: String, reason: Refusal },
    /// One message for every way the target can fail (refused connection, timeout, error
    /// status, redirect off its origin, oversized body): a caller cannot tell them apart, so
    /// fetches cannot be used to probe what listens where.
    #[error(
        "{url} did not answer with a document (no connection, no answer within {}s, an error \
         status, a redirect to another origin, or more than {MAX_DOCUMENT_BYTES} bytes)",
        FETCH_TIMEOUT.as_secs()
    )]
    NoDocument { url: String },
}

/// Where fetches may go: the rules above, this server's own origin and the admin's list.
#[derive(Debug, Clone, Default)]
pub struct FetchPolicy {
    own_origin: Option<url::Origin>,
    allow: Vec<AllowedHost>,
}

impl FetchPolicy {
    pub fn new(public_url: &str, allow: Vec<AllowedHost>) -> Self {
        Self {
            own_origin: Url::parse(public_url).ok().map(|u| u.origin()),
            allow,
        }
    }

    /// Whether `url` is this server or allow-listed: plain http and private addresses are
    /// fine there.
    fn trusted(&self, url: &Url) -> bool {
        if self.own_origin.as_ref() == Some(&url.origin()) {
            return true;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        self.allow
            .iter()
            .any(|a| a.host == host && a.port.is_none_or(|p| p == port))
    }

    /// The addresses `url` may be fetched from, or why it may not be fetched at all.
    pub async fn check(&self, url: &Url) -> Result<Vec<SocketAddr>, Refusal> {
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(Refusal::NotAUrl);
        };
        let trusted = self.trusted(url);
        match url.scheme() {
            "https" => {}
            "http" if trusted => {}
            "http" => return Err(Refusal::NotHttps),
            _ => return Err(Refusal::NotAUrl),
        }
        let addrs: Vec<SocketAddr> = match host {
            url::Host::Ipv4(ip) => vec![SocketAddr::new(ip.into(), port)],
            url::Host::Ipv6(ip) => vec![SocketAddr::new(ip.into(), port)],
            url::Host::Domain(name) => {
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((name, port)))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(Iterator::collect)
                    .unwrap_or_default()
            }
        };
        if addrs.is_empty() {
            return Err(Refusal::DoesNotResolve);
        }
        // Every address must be public: the connection may go to any of them.
        if !trusted && !addrs.iter().all(|a| is_public(a.ip())) {
            return Err(Refusal::NotPublic);
        }
        Ok(addrs)
    }

    /// GETs `url` under the rules; the body, at most [`MAX_DOCUMENT_BYTES`].
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let refused = |reason| FetchError::Refused {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| refused(Refusal::NotAUrl))?;
        let addrs = self.check(&parsed).await.map_err(refused)?;
        fetch(&parsed, &addrs).await.map_err(|detail| {
            tracing::info!(%url, %detail, "issuer fetch failed");
            FetchError::NoDocument {
                url: url.to_owned(),
            }
        })
    }
}

/// One GET connected only to `addrs` (already checked), following redirects only within the
/// URL's origin (so they reach the same checked addresses). The error is for the log only.
async fn fetch(url: &Url, addrs: &[SocketAddr]) -> Result<Vec<u8>, String> {
    let origin = url.origin();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt.url().origin() != origin {
            attempt.error("a redirect to another origin")
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(redirects);
    if let Some(url::Host::Domain(name)) = url.host() {
        builder = builder.resolve_to_addrs(name, addrs);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err("Content-Length over the limit".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err("body over the limit".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `ip` is on the public internet (std's `is_global` is not stable yet).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                // Shared address space (carrier-grade NAT), IETF protocol assignments,
                // benchmarking.
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                // NAT64 and IPv4-compatible forms would reach an IPv4 address indirectly.
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)
                // 6to4 and Teredo tunnel to an IPv4 address too.
                || first == 0x2002
                || (first == 0x2001 && v6.segments()[1] == 0x0000)
                || v6.segments()[..6].iter().all(|s| *s == 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "142.250.1.1", "2607:f8b0::1", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn allowed_hosts_parse_as_host_and_optional_port() {
        let cases = [
            ("issuer.internal", Some(("issuer.internal", None))),
            (
                "Issuer.Internal:8443",
                Some(("issuer.internal", Some(8443))),
            ),
            ("127.0.0.1:80", Some(("127.0.0.1", Some(80)))),
            ("[::1]:8443", Some(("[::1]", Some(8443)))),
            ("", None),
            ("http://x", None),
            ("x/path", None),
            ("user@x", None),
            ("x:notaport", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<AllowedHost>().ok();
            let got = got.as_ref().map(|a| (a.host.as_str(), a.port));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[tokio::test]
    async fn the_rules_decide_before_any_connection() {
        let allow = vec![
            "10.0.0.5".parse().unwrap(),
            "localhost:8443".parse().unwrap(),
        ];
        let policy = FetchPolicy::new("http://127.0.0.1:8080", allow);
        let cases = [
            ("http://127.0.0.1:8080/keys", Ok(())),
            ("http://127.0.0.1:8081/keys", Err(Refusal::NotHttps)),
            ("https://127.0.0.1:8081/keys", Err(Refusal::NotPublic)),
            ("https://169.254.169.254/", Err(Refusal::NotPublic)),
            ("https://[::1]/", Err(Refusal::NotPublic)),
            ("https://0.0.0.0/", Err(Refusal::NotPublic)),
            // Other spellings of loopback that URL parsing normalizes.
            ("https://2130706433/", Err(Refusal::NotPublic)),
            ("https://0x7f.1/", Err(Refusal::NotPublic)),
            ("http://10.0.0.5:9999/", Ok(())),
            ("https://localhost:8443/", Ok(())),
            ("https://localhost:8444/", Err(Refusal::NotPublic)),
            ("http://localhost/", Err(Refusal::NotHttps)),
            ("ftp://8.8.8.8/", Err(Refusal::NotAUrl)),
            ("https://8.8.8.8/", Ok(())),
        ];
        for (url, want) in cases {
            let got = policy.check(&Url::parse(url).unwrap()).await.map(|_| ());
            assert_eq!(got, want, "{url}");
        }
    }
}
