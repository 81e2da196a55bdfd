//! The SSRF guard: deliveries go to the public internet only, unless configuration opens chosen
//! ranges. The check is on the address actually connected to: the HTTP client resolves names
//! through [`GuardedResolver`], which hands the connector only addresses that pass, so a DNS
//! answer cannot change between a check and the connection. IP literals skip DNS and are checked
//! before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be delivered to, or `None` when it may.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => Some("unspecified (0.0.0.0/8)"),
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_private() => Some("private"),
        _ if ip.is_link_local() => Some("link-local (cloud metadata included)"),
        (100, 64..=127, _) => Some("carrier-grade NAT (100.64.0.0/10)"),
        _ if ip.is_multicast() => Some("multicast"),
        _ if ip.is_broadcast() => Some("broadcast"),
        (240..=255, _, _) => Some("reserved (240.0.0.0/4)"),
        (192, 0, 0) => Some("IETF protocol assignments (192.0.0.0/24)"),
        (192, 88, 99) => Some("6to4 relay anycast (192.88.99.0/24)"),
        (198, 18..=19, _) => Some("benchmarking (198.18.0.0/15)"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
        _ => None,
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // Addresses that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d),
    // the deprecated compatible form (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match segments {
        _ if ip.is_unspecified() => Some("unspecified (::)"),
        _ if ip.is_loopback() => Some("loopback"),
        [0, 0, 0, 0, 0, 0, high, low] => forbidden_v4(embedded(high, low)),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => forbidden_v4(embedded(high, low)),
        [0x64, 0xff9b, 1, ..] => Some("local-use NAT64 (64:ff9b:1::/48)"),
        [0x2002, high, low, ..] => forbidden_v4(embedded(high, low)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7)"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast"),
        [0x2001, 0xdb8, ..] => Some("documentation (2001:db8::/32)"),
        _ => None,
    }
}

/// Which addresses deliveries may reach: public ones, and any range configuration opened.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    /// A policy opening `allowed` (e.g. `127.0.0.0/8` for local development) on top of the
    /// public internet.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        TargetPolicy { allowed }
    }

    /// Why `ip` is refused, or `None` when a delivery may connect to it.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        let class = forbidden_class(ip)?;
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        Some(format!(
            "refused by the SSRF guard: {ip} is {class} (open it with SPENZA_ALLOWED_TARGET_NETS)"
        ))
    }
}

impl TargetPolicy {
    /// Why a URL whose host is an IP literal is refused; `None` for allowed literals and for
    /// names (those are checked when they resolve).
    pub fn refusal_for_literal(&self, url: &url::Url) -> Option<String> {
        let ip = match url.host()? {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return None,
        };
        self.refusal(ip)
    }
}

/// A refused name: every address it resolved to is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Resolves names like the system does, then drops every address the policy refuses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<TargetPolicy>) -> Self {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| match policy.refusal(address.ip()) {
                    Some(reason) => {
                        refusal = Some(reason);
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let reason = refusal.unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(Box::new(Refused(format!("{host}: {reason}"))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        forbidden_class(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn every_internal_ipv4_range_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_ipv4_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "192.169.0.1",
        ] {
            assert!(!refused(ip), "{ip} should pass");
        }
    }

    #[test]
    fn every_internal_ipv6_range_is_refused_including_embedded_ipv4() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "64:ff9b:1::a00:1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_ipv6_addresses_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(ip), "{ip} should pass");
        }
    }

    #[test]
    fn configured_ranges_are_opened_and_nothing_else() {
        let policy = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(policy.refusal("127.0.0.1".parse().unwrap()), None);
        let refusal = policy
            .refusal("10.0.0.1".parse().unwrap())
            .expect("still refused");
        assert!(refusal.contains("10.0.0.1 is private"), "{refusal}");
        assert!(
            policy.refusal("::1".parse().unwrap()).is_some(),
            "::1 is not in 127.0.0.0/8"
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_by_the_resolver() {
        let resolver = GuardedResolver::new(Arc::new(TargetPolicy::default()));
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addresses) => panic!("localhost resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("loopback"), "{error}");
    }

    #[tokio::test]
    async fn an_opened_range_resolves_normally() {
        let policy = TargetPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let resolver = GuardedResolver::new(Arc::new(policy));
        let addresses: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()) && !addresses.is_empty());
    }
}
