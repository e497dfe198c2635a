//! Which webhook endpoints may be called: http(s) only, and never an address
//! inside our own network (loopback, private, link-local, unspecified …)
//! unless an operator allows it. Checked when the URL is configured and
//! again at every connection, through the resolver the HTTP client uses, so
//! a name that later resolves elsewhere (DNS rebinding) is caught too.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// Longest accepted webhook URL.
const MAX_URL_LEN: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("webhook_url is not a valid URL")]
    Invalid,
    #[error("webhook_url must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("webhook_url must use http or https")]
    Scheme,
    #[error("webhook_url host cannot be resolved")]
    Unresolvable,
    #[error(
        "webhook_url resolves to {0}, a loopback, private, link-local or otherwise internal address"
    )]
    Forbidden(IpAddr),
}

/// True for addresses a webhook must never reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || ip.to_ipv4().is_some_and(|v4| forbidden_v4(v4) && first == 0) // IPv4-compatible
}

/// Parses and checks a webhook URL, resolving its host.
pub async fn validate(raw: &str, allow_private: bool) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(raw.trim()).map_err(|_| UrlError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(UrlError::Invalid)?;
    let port = url.port_or_known_default().ok_or(UrlError::Invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), lookup)
        .await
        .map_err(|_| UrlError::Unresolvable)?
        .map_err(|_| UrlError::Unresolvable)?
        .collect();
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable);
    }
    if !allow_private {
        if let Some(bad) = addrs
            .iter()
            .map(SocketAddr::ip)
            .find(|ip| is_forbidden(*ip))
        {
            return Err(UrlError::Forbidden(bad));
        }
    }
    Ok(url)
}

/// The host of `url` when it is an IP literal the policy forbids: such URLs
/// never reach the resolver, so the delivery path checks them here.
pub fn forbidden_literal(url: &Url) -> Option<IpAddr> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    is_forbidden(ip).then_some(ip)
}

/// The HTTP client's resolver: the system's, minus forbidden addresses.
#[derive(Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| !is_forbidden(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} resolves only to internal addresses, which webhooks may not reach",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

pub fn guarded_resolver() -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_refused_for_scheme_shape_and_internal_hosts() {
        assert_eq!(
            validate("ftp://example.com/x", false).await,
            Err(UrlError::Scheme)
        );
        assert_eq!(validate("not a url", false).await, Err(UrlError::Invalid));
        assert_eq!(
            validate(&format!("https://a.com/{}", "x".repeat(3000)), false).await,
            Err(UrlError::TooLong)
        );
        for internal in [
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://10.0.0.8/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
        ] {
            assert!(
                matches!(validate(internal, false).await, Err(UrlError::Forbidden(_))),
                "{internal}"
            );
        }
        assert!(validate("http://127.0.0.1:9/hook", true).await.is_ok());
    }
}
