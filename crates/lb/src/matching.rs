//! Rule conditions as ALB evaluates them: `*`/`?` wildcards, host headers without their port
//! and compared case-insensitively, path patterns on the path only and case-sensitively,
//! query-string pairs, HTTP methods, headers and client CIDR blocks. Conditions are compiled
//! once per snapshot so a request only compares bytes.

use std::net::IpAddr;

use http::request::Parts;
use model::elb::RouteCondition;

/// What conditions look at in a request: implemented for hyper's parsed requests (HTTP/2
/// clients) and for the raw HTTP/1.x path's borrowed head.
pub trait RequestView {
    fn method(&self) -> &str;
    /// The path, without the query.
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// The `Host` header (HTTP/1.1) or the URI's authority (absolute form, HTTP/2).
    fn host(&self) -> Option<&str>;
    /// Whether some value of header `name` (lowercase) satisfies `matches`.
    fn any_header_value(&self, name: &str, matches: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

impl RequestView for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn host(&self) -> Option<&str> {
        self.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.uri.authority().map(|a| a.as_str()))
    }

    fn any_header_value(&self, name: &str, matches: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.headers
            .get_all(name)
            .iter()
            .any(|value| matches(value.as_bytes()))
    }
}

/// `*` matches any run (also empty), `?` exactly one byte; everything else itself.
/// With `ignore_case`, ASCII letters compare case-insensitively.
pub fn wildcard_match(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Greedy with one backtrack point: linear for the patterns rules use.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || eq(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A CIDR block, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().ok()?),
            None => (text, if text.contains(':') { 128 } else { 32 }),
        };
        let network: IpAddr = address.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One compiled condition: true when any of its values matches.
#[derive(Debug, Clone)]
pub enum Condition {
    PathPattern(Vec<String>),
    HostHeader(Vec<String>),
    HttpHeader {
        name: http::HeaderName,
        values: Vec<String>,
    },
    HttpRequestMethod(Vec<String>),
    QueryString(Vec<(Option<String>, String)>),
    SourceIp(Vec<Cidr>),
    /// A condition the snapshot spelled in a way this node cannot evaluate (a bad header name
    /// or CIDR): it never matches, so the rule is skipped rather than over-matching.
    Never,
}

impl Condition {
    pub fn compile(condition: &RouteCondition) -> Condition {
        match condition {
            RouteCondition::PathPattern { values } => Condition::PathPattern(values.clone()),
            RouteCondition::HostHeader { values } => Condition::HostHeader(values.clone()),
            RouteCondition::HttpHeader { name, values } => match name.parse() {
                Ok(name) => Condition::HttpHeader {
                    name,
                    values: values.clone(),
                },
                Err(_) => Condition::Never,
            },
            RouteCondition::HttpRequestMethod { values } => {
                Condition::HttpRequestMethod(values.clone())
            }
            RouteCondition::QueryString { values } => Condition::QueryString(
                values
                    .iter()
                    .map(|pair| (pair.key.clone(), pair.value.clone()))
                    .collect(),
            ),
            RouteCondition::SourceIp { values } => {
                let blocks: Option<Vec<Cidr>> = values.iter().map(|v| Cidr::parse(v)).collect();
                blocks.map(Condition::SourceIp).unwrap_or(Condition::Never)
            }
        }
    }

    pub fn matches<R: RequestView + ?Sized>(&self, request: &R, client: IpAddr) -> bool {
        match self {
            Condition::PathPattern(patterns) => {
                let path = request.path().as_bytes();
                patterns
                    .iter()
                    .any(|p| wildcard_match(p.as_bytes(), path, false))
            }
            Condition::HostHeader(patterns) => {
                let Some(host) = request.host() else {
                    return false;
                };
                let host = strip_port(host).as_bytes();
                patterns
                    .iter()
                    .any(|p| wildcard_match(p.as_bytes(), host, true))
            }
            Condition::HttpHeader { name, values } => {
                request.any_header_value(name.as_str(), &mut |value| {
                    values
                        .iter()
                        .any(|p| wildcard_match(p.as_bytes(), value, true))
                })
            }
            // AWS compares methods case-sensitively and without wildcards.
            Condition::HttpRequestMethod(methods) => {
                let method = request.method();
                methods.iter().any(|m| m == method)
            }
            Condition::QueryString(pairs) => {
                let query = request.query().unwrap_or("");
                pairs.iter().any(|(key, value)| {
                    query.split('&').any(|item| {
                        let (k, v) = item.split_once('=').unwrap_or((item, ""));
                        key.as_ref()
                            .is_none_or(|key| wildcard_match(key.as_bytes(), k.as_bytes(), true))
                            && wildcard_match(value.as_bytes(), v.as_bytes(), true)
                    })
                })
            }
            Condition::SourceIp(blocks) => blocks.iter().any(|b| b.contains(client)),
            Condition::Never => false,
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>, method: &str) -> Parts {
        let mut builder = http::Request::builder().uri(uri).method(method);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard_match(b"/api/*", b"/api/users", false));
        assert!(wildcard_match(b"/api/*", b"/api/", false));
        assert!(!wildcard_match(b"/api/*", b"/api", false));
        assert!(wildcard_match(b"/img/*.png", b"/img/a/b.png", false));
        assert!(wildcard_match(b"/v?/x", b"/v2/x", false));
        assert!(!wildcard_match(b"/v?/x", b"/v10/x", false));
        assert!(!wildcard_match(b"/API/*", b"/api/x", false));
        assert!(wildcard_match(b"*.Example.com", b"www.example.COM", true));
        assert!(wildcard_match(b"*", b"", false));
        assert!(wildcard_match(b"a*b*c", b"axxbyybzc", false));
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn host_headers_match_without_port_and_case() {
        let condition = Condition::HostHeader(vec!["api.example.com".into()]);
        let ip = "127.0.0.1".parse().unwrap();
        assert!(condition.matches(&parts("/", Some("API.example.com:8080"), "GET"), ip));
        assert!(!condition.matches(&parts("/", Some("www.example.com"), "GET"), ip));
        assert!(condition.matches(&parts("http://api.example.com/", None, "GET"), ip));
    }

    #[test]
    fn paths_ignore_the_query_and_methods_are_case_sensitive() {
        let ip = "127.0.0.1".parse().unwrap();
        let path = Condition::PathPattern(vec!["/a/*".into()]);
        assert!(path.matches(&parts("/a/b?x=/c", None, "GET"), ip));
        assert!(!path.matches(&parts("/b?x=/a/", None, "GET"), ip));
        let method = Condition::HttpRequestMethod(vec!["POST".into()]);
        assert!(method.matches(&parts("/", None, "POST"), ip));
        assert!(!method.matches(&parts("/", None, "GET"), ip));
    }

    #[test]
    fn query_strings_match_pairs() {
        let ip = "127.0.0.1".parse().unwrap();
        let query = Condition::QueryString(vec![
            (Some("version".into()), "v1*".into()),
            (None, "beta".into()),
        ]);
        assert!(query.matches(&parts("/?a=1&version=v12", None, "GET"), ip));
        assert!(query.matches(&parts("/?mode=BETA", None, "GET"), ip));
        assert!(!query.matches(&parts("/?version=v2", None, "GET"), ip));
        assert!(!query.matches(&parts("/", None, "GET"), ip));
    }

    #[test]
    fn headers_and_source_ips_match() {
        let request = http::Request::builder()
            .uri("/")
            .header("user-agent", "Mozilla/5.0 Chrome")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let header = Condition::compile(&RouteCondition::HttpHeader {
            name: "User-Agent".into(),
            values: vec!["*chrome*".into()],
        });
        assert!(header.matches(&request, "127.0.0.1".parse().unwrap()));
        let source = Condition::compile(&RouteCondition::SourceIp {
            values: vec!["127.0.0.0/8".into()],
        });
        assert!(source.matches(&request, "127.9.9.9".parse().unwrap()));
        assert!(!source.matches(&request, "10.9.9.9".parse().unwrap()));
    }
}
