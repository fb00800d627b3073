//! DescribeNetworkInterfaces: the ENIs the ECS task launcher writes for awsvpc tasks.

use model::ec2::{self, NetworkInterface, SecurityGroup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{bool_str, check_filters, matches, well_formed, zones, Filter};
use super::error::{Ec2Error, Result};
use super::{input, Ec2Context};

/// An ENI as the model's `NetworkInterface` shape, with the members Wharf derives.
fn output(ctx: &Ec2Context, eni: &NetworkInterface) -> Value {
    let mut value = serde_json::to_value(eni).unwrap_or_default();
    let dns = crate::ecs::awsvpc::private_dns_name(&ctx.region, &eni.private_ip_address);
    value["PrivateDnsName"] = json!(dns);
    value["PrivateIpAddresses"] = json!([{
        "PrivateIpAddress": eni.private_ip_address,
        "PrivateDnsName": dns,
        "Primary": true,
    }]);
    value["Ipv6Addresses"] = json!([]);
    if let Some(zone) = zones(&ctx.region)
        .into_iter()
        .find(|z| z.name == eni.availability_zone)
    {
        value["AvailabilityZoneId"] = json!(zone.id);
    }
    value
}

const ENI_FILTERS: &[&str] = &[
    "network-interface-id",
    "subnet-id",
    "vpc-id",
    "private-ip-address",
    "addresses.private-ip-address",
    "private-dns-name",
    "status",
    "group-id",
    "group-name",
    "availability-zone",
    "availability-zone-id",
    "description",
    "interface-type",
    "mac-address",
    "owner-id",
    "requester-id",
    "requester-managed",
    "source-dest-check",
    "tag-key",
    "tag-value",
];

fn eni_values(ctx: &Ec2Context, eni: &NetworkInterface, name: &str) -> Vec<String> {
    let one = |v: &str| vec![v.to_string()];
    match name {
        "network-interface-id" => one(&eni.network_interface_id),
        "subnet-id" => one(&eni.subnet_id),
        "vpc-id" => one(&eni.vpc_id),
        "private-ip-address" | "addresses.private-ip-address" => one(&eni.private_ip_address),
        "private-dns-name" => vec![crate::ecs::awsvpc::private_dns_name(
            &ctx.region,
            &eni.private_ip_address,
        )],
        "status" => one(&eni.status),
        "group-id" => eni.groups.iter().map(|g| g.group_id.clone()).collect(),
        "group-name" => eni.groups.iter().map(|g| g.group_name.clone()).collect(),
        "availability-zone" => one(&eni.availability_zone),
        "availability-zone-id" => zones(&ctx.region)
            .into_iter()
            .filter(|z| z.name == eni.availability_zone)
            .map(|z| z.id)
            .collect(),
        "description" => one(&eni.description),
        "interface-type" => one(&eni.interface_type),
        "mac-address" => one(&eni.mac_address),
        "owner-id" => one(&eni.owner_id),
        "requester-id" => eni.requester_id.iter().cloned().collect(),
        "requester-managed" => vec![bool_str(eni.requester_managed)],
        "source-dest-check" => vec![bool_str(eni.source_dest_check)],
        _ => Vec::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeNetworkInterfacesInput {
    network_interface_ids: Vec<String>,
    filters: Vec<Filter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe_network_interfaces(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeNetworkInterfacesInput = input(raw)?;
    check_filters(&request.filters, ENI_FILTERS)?;
    if request.max_results.is_some() && !request.network_interface_ids.is_empty() {
        return Err(Ec2Error::InvalidParameterCombination(
            "The parameter NetworkInterfaceIds cannot be used with the parameter MaxResults" // guessed
                .into(),
        ));
    }
    let mut all: Vec<NetworkInterface> = ctx
        .range_json::<NetworkInterface>(ec2::NETWORK_INTERFACE_PREFIX)
        .await?
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    for id in &request.network_interface_ids {
        if !all.iter().any(|e| &e.network_interface_id == id) {
            return Err(if well_formed(id, "eni") {
                Ec2Error::NetworkInterfaceNotFound(id.clone())
            } else {
                Ec2Error::NetworkInterfaceIdMalformed(id.clone())
            });
        }
    }
    // The launcher may write an ENI's groups by id only; fill in their names.
    if all
        .iter()
        .any(|e| e.groups.iter().any(|g| g.group_name.is_empty()))
    {
        let groups = ctx
            .range_json::<SecurityGroup>(ec2::SECURITY_GROUP_PREFIX)
            .await?;
        for eni in &mut all {
            for g in &mut eni.groups {
                if g.group_name.is_empty() {
                    if let Some((group, _)) = groups.iter().find(|(s, _)| s.group_id == g.group_id)
                    {
                        g.group_name = group.group_name.clone();
                    }
                }
            }
        }
    }
    let items = all
        .iter()
        .filter(|e| {
            request.network_interface_ids.is_empty()
                || request
                    .network_interface_ids
                    .contains(&e.network_interface_id)
        })
        .filter(|e| matches(&request.filters, &e.tag_set, |n| eni_values(ctx, e, n)))
        .map(|e| (e.network_interface_id.clone(), output(ctx, e)))
        .collect();
    let scope = format!(
        "DescribeNetworkInterfaces {}",
        serde_json::to_string(&request.filters).unwrap_or_default()
    );
    let (page, next) = ctx
        .paginate(
            &scope,
            items,
            request.max_results,
            request.next_token.as_deref(),
        )
        .await?;
    Ok(json!({"NetworkInterfaces": page, "NextToken": next}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_names() {
        assert_eq!(
            crate::ecs::awsvpc::private_dns_name("us-east-1", "172.31.0.4"),
            "ip-172-31-0-4.ec2.internal"
        );
        assert_eq!(
            crate::ecs::awsvpc::private_dns_name("eu-west-1", "10.0.0.5"),
            "ip-10-0-0-5.eu-west-1.compute.internal"
        );
    }
}
