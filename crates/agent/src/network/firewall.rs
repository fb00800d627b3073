//! Security groups as an iptables ruleset for a task's network namespace, loaded whole with
//! `iptables-restore` (see [`super::enforcer`]), so a change replaces the rules atomically.
//!
//! Ingress, in the `WHARF-SG` chain hooked from INPUT: loopback and replies to the task's own
//! connections are accepted, then one ACCEPT per (rule, source CIDR) of every group, then DROP
//! (security groups drop silently, so a refused client times out as on AWS).
//!
//! Egress stays open unless the groups restrict it: when they have egress rules and none
//! allows everything everywhere, `WHARF-SG-EGRESS` (hooked from OUTPUT) accepts loopback,
//! replies, the subnet's gateway (the host, where the agent serves the task metadata endpoint,
//! which security groups never block on ECS either) and what the rules allow, and drops the
//! rest. Groups without any egress rule do not close egress here (on AWS they would); see
//! docs/compat.md.
//!
//! Rules that name another security group as the source (`UserIdGroupPairs`) are not
//! enforced: the agent only knows its own task's addresses.

use model::ec2::{IpPermission, SecurityGroup};

/// The ingress chain's name.
pub const INGRESS_CHAIN: &str = "WHARF-SG";
/// The egress chain's name (present only when egress is restricted).
pub const EGRESS_CHAIN: &str = "WHARF-SG-EGRESS";

/// Which way a rule's CIDR points.
#[derive(Clone, Copy)]
enum Direction {
    /// The CIDR is the source.
    Ingress,
    /// The CIDR is the destination.
    Egress,
}

/// The iptables protocol and match arguments of a permission, or `None` when it cannot be
/// expressed over IPv4 (ICMPv6, an unknown name).
fn protocol_match(permission: &IpPermission) -> Option<Vec<String>> {
    let protocol = permission.ip_protocol.to_ascii_lowercase();
    let from = permission.from_port.filter(|p| *p >= 0);
    let to = permission.to_port.filter(|p| *p >= 0);
    let ports = |name: &str| -> Vec<String> {
        let mut args = vec!["-p".to_string(), name.to_string()];
        match (from, to) {
            (Some(from), Some(to)) if from == to => {
                args.extend(["--dport".to_string(), from.to_string()])
            }
            (Some(from), Some(to)) => args.extend(["--dport".to_string(), format!("{from}:{to}")]),
            (Some(port), None) | (None, Some(port)) => {
                args.extend(["--dport".to_string(), port.to_string()])
            }
            (None, None) => {}
        }
        args
    };
    match protocol.as_str() {
        "-1" | "all" => Some(Vec::new()),
        "tcp" | "6" => Some(ports("tcp")),
        "udp" | "17" => Some(ports("udp")),
        "icmp" | "1" => {
            // For ICMP, FromPort is the type and ToPort the code (-1: any).
            let mut args = vec!["-p".to_string(), "icmp".to_string()];
            match (from, to) {
                (Some(kind), Some(code)) => {
                    args.extend(["--icmp-type".to_string(), format!("{kind}/{code}")])
                }
                (Some(kind), None) => args.extend(["--icmp-type".to_string(), kind.to_string()]),
                _ => {}
            }
            Some(args)
        }
        "icmpv6" | "58" => None,
        other if !other.is_empty() && other.chars().all(|c| c.is_ascii_digit()) => {
            Some(vec!["-p".to_string(), other.to_string()])
        }
        _ => None,
    }
}

/// Only IPv4 CIDRs (digits, dots, one slash) reach iptables: nothing in a rule can inject
/// another argument or line.
fn valid_cidr(cidr: &str) -> bool {
    let (address, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
    address.parse::<std::net::Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
}

fn rule_lines(chain: &str, direction: Direction, permissions: &[&IpPermission]) -> Vec<String> {
    let mut lines = Vec::new();
    for permission in permissions {
        let Some(matches) = protocol_match(permission) else {
            tracing::debug!(protocol = %permission.ip_protocol, "security group rule not enforceable over IPv4; skipped");
            continue;
        };
        for range in &permission.ip_ranges {
            if !valid_cidr(&range.cidr_ip) {
                tracing::warn!(cidr = %range.cidr_ip, "invalid CIDR in a security group rule; skipped");
                continue;
            }
            let address = match direction {
                Direction::Ingress => "-s",
                Direction::Egress => "-d",
            };
            let mut line = format!("-A {chain}");
            for arg in &matches {
                line.push(' ');
                line.push_str(arg);
            }
            line.push_str(&format!(" {address} {} -j ACCEPT", range.cidr_ip));
            lines.push(line);
        }
    }
    lines
}

/// Whether a permission allows all traffic to or from everywhere.
fn allows_everything(permission: &IpPermission) -> bool {
    matches!(permission.ip_protocol.as_str(), "-1" | "all")
        && permission
            .ip_ranges
            .iter()
            .any(|r| r.cidr_ip == "0.0.0.0/0")
}

/// The ruleset (iptables-restore input for the filter table) enforcing `groups`, with the
/// agent's own address (the subnet's gateway) always reachable.
pub fn ruleset(groups: &[SecurityGroup], agent_address: Option<&str>) -> String {
    let ingress: Vec<&IpPermission> = groups.iter().flat_map(|g| &g.ip_permissions).collect();
    let egress: Vec<&IpPermission> = groups
        .iter()
        .flat_map(|g| &g.ip_permissions_egress)
        .collect();
    let restrict_egress = !egress.is_empty() && !egress.iter().any(|p| allows_everything(p));
    let mut lines = vec![
        "*filter".to_string(),
        ":INPUT ACCEPT [0:0]".to_string(),
        ":FORWARD ACCEPT [0:0]".to_string(),
        ":OUTPUT ACCEPT [0:0]".to_string(),
        format!(":{INGRESS_CHAIN} - [0:0]"),
    ];
    if restrict_egress {
        lines.push(format!(":{EGRESS_CHAIN} - [0:0]"));
    }
    lines.push(format!("-A INPUT -j {INGRESS_CHAIN}"));
    lines.push(format!("-A {INGRESS_CHAIN} -i lo -j ACCEPT"));
    lines.push(format!(
        "-A {INGRESS_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    ));
    lines.extend(rule_lines(INGRESS_CHAIN, Direction::Ingress, &ingress));
    lines.push(format!("-A {INGRESS_CHAIN} -j DROP"));
    if restrict_egress {
        lines.push(format!("-A OUTPUT -j {EGRESS_CHAIN}"));
        lines.push(format!("-A {EGRESS_CHAIN} -o lo -j ACCEPT"));
        lines.push(format!(
            "-A {EGRESS_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        ));
        if let Some(address) = agent_address.filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok()) {
            lines.push(format!("-A {EGRESS_CHAIN} -d {address}/32 -j ACCEPT"));
        }
        lines.extend(rule_lines(EGRESS_CHAIN, Direction::Egress, &egress));
        lines.push(format!("-A {EGRESS_CHAIN} -j DROP"));
    }
    lines.push("COMMIT".to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ec2::IpRange;

    fn permission(
        protocol: &str,
        from: Option<i64>,
        to: Option<i64>,
        cidrs: &[&str],
    ) -> IpPermission {
        IpPermission {
            ip_protocol: protocol.into(),
            from_port: from,
            to_port: to,
            ip_ranges: cidrs
                .iter()
                .map(|c| IpRange {
                    cidr_ip: c.to_string(),
                    description: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn group(ingress: Vec<IpPermission>, egress: Vec<IpPermission>) -> SecurityGroup {
        SecurityGroup {
            group_id: "sg-1".into(),
            ip_permissions: ingress,
            ip_permissions_egress: egress,
            ..Default::default()
        }
    }

    #[test]
    fn ingress_rules_become_one_accept_per_cidr_then_drop() {
        let open_egress = vec![permission("-1", None, None, &["0.0.0.0/0"])];
        let groups = vec![
            group(
                vec![
                    permission("tcp", Some(80), Some(80), &["0.0.0.0/0"]),
                    permission(
                        "tcp",
                        Some(8000),
                        Some(8100),
                        &["10.0.0.0/8", "192.168.1.0/24"],
                    ),
                ],
                open_egress.clone(),
            ),
            group(
                vec![
                    permission("udp", Some(53), Some(53), &["10.1.0.0/16"]),
                    permission("icmp", Some(8), Some(-1), &["10.2.0.0/16"]),
                    permission("-1", None, None, &["10.3.0.0/16"]),
                    permission("tcp", Some(22), Some(22), &["not-a-cidr -j ACCEPT"]),
                ],
                open_egress,
            ),
        ];
        assert_eq!(
            ruleset(&groups, Some("10.213.0.1")),
            "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:WHARF-SG - [0:0]
-A INPUT -j WHARF-SG
-A WHARF-SG -i lo -j ACCEPT
-A WHARF-SG -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A WHARF-SG -p tcp --dport 80 -s 0.0.0.0/0 -j ACCEPT
-A WHARF-SG -p tcp --dport 8000:8100 -s 10.0.0.0/8 -j ACCEPT
-A WHARF-SG -p tcp --dport 8000:8100 -s 192.168.1.0/24 -j ACCEPT
-A WHARF-SG -p udp --dport 53 -s 10.1.0.0/16 -j ACCEPT
-A WHARF-SG -p icmp --icmp-type 8 -s 10.2.0.0/16 -j ACCEPT
-A WHARF-SG -s 10.3.0.0/16 -j ACCEPT
-A WHARF-SG -j DROP
COMMIT
"
        );
    }

    #[test]
    fn no_groups_drop_all_ingress_and_leave_egress_open() {
        let text = ruleset(&[], None);
        assert!(text.contains("-A WHARF-SG -j DROP\nCOMMIT\n"), "{text}");
        assert!(!text.contains(EGRESS_CHAIN));
    }

    #[test]
    fn restricted_egress_gets_its_own_chain() {
        let groups = vec![group(
            Vec::new(),
            vec![permission("tcp", Some(443), Some(443), &["10.9.0.0/16"])],
        )];
        let text = ruleset(&groups, Some("10.9.0.1"));
        assert!(text.contains(":WHARF-SG-EGRESS - [0:0]\n"), "{text}");
        assert!(text.contains("-A OUTPUT -j WHARF-SG-EGRESS\n"));
        assert!(text.contains("-A WHARF-SG-EGRESS -d 10.9.0.1/32 -j ACCEPT\n"));
        assert!(text.contains("-A WHARF-SG-EGRESS -p tcp --dport 443 -d 10.9.0.0/16 -j ACCEPT\n"));
        assert!(text.ends_with("-A WHARF-SG-EGRESS -j DROP\nCOMMIT\n"));
    }
}
