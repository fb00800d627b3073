//! Proxy Protocol version 2 headers, which an NLB target group with
//! `proxy_protocol_v2.enabled` puts at the start of every connection to its targets: a flow's
//! header carries the client's address and the listener's, so a target behind the load
//! balancer still learns who connected; a health check's header is a `LOCAL` one with no
//! addresses, as AWS sends (the check is the load balancer's own connection).
//!
//! The header is the binary form of the specification (haproxy's `proxy-protocol.txt`, §2.2):
//! a 12-byte signature, version and command, address family and transport, a 16-bit length,
//! then the addresses. Nothing follows them: AWS's own TLV (the PrivateLink endpoint id) has
//! no meaning here.

use std::net::{IpAddr, SocketAddr};

/// The signature every version 2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command `PROXY`: the connection was relayed for a client.
const PROXY: u8 = 0x21;
/// Version 2, command `LOCAL`: the connection is the proxy's own (health checks).
const LOCAL: u8 = 0x20;
/// `AF_INET` or `AF_INET6` over `STREAM`, and `AF_UNSPEC` for `LOCAL`.
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;
const UNSPECIFIED: u8 = 0x00;

/// The header of a flow from `client` accepted on `listener`. Mixed families (an IPv4 client
/// on an IPv6 listener) are both written as IPv6, the IPv4 one mapped.
pub fn flow_header(client: SocketAddr, listener: SocketAddr) -> Vec<u8> {
    let mut header = Vec::with_capacity(16 + 36);
    header.extend_from_slice(&SIGNATURE);
    header.push(PROXY);
    match (client.ip(), listener.ip()) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            header.push(TCP_OVER_IPV4);
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&source.octets());
            header.extend_from_slice(&destination.octets());
        }
        (source, destination) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            header.push(TCP_OVER_IPV6);
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(source).octets());
            header.extend_from_slice(&v6(destination).octets());
        }
    }
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&listener.port().to_be_bytes());
    header
}

/// The header of a health-check connection: `LOCAL`, no addresses.
pub fn local_header() -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..12].copy_from_slice(&SIGNATURE);
    header[12] = LOCAL;
    header[13] = UNSPECIFIED;
    // The length (bytes 14 and 15) is zero.
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_flow_header_carries_both_addresses() {
        let header = flow_header(
            "10.1.2.3:51000".parse().unwrap(),
            "127.128.0.5:9000".parse().unwrap(),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 1, 2, 3, 127, 128, 0, 5]);
        expected.extend_from_slice(&51000u16.to_be_bytes());
        expected.extend_from_slice(&9000u16.to_be_bytes());
        assert_eq!(header, expected);
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let header = flow_header("10.1.2.3:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(&header[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(header.len(), 16 + 36);
        let source: [u8; 16] = header[16..32].try_into().unwrap();
        assert_eq!(
            std::net::Ipv6Addr::from(source).to_ipv4_mapped(),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(&header[48..], &[0, 1, 0, 2]);
    }

    #[test]
    fn a_local_header_has_no_addresses() {
        let header = local_header();
        assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&header[12..], &[0x20, 0, 0, 0]);
    }
}
