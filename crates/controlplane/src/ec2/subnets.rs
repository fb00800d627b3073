//! Subnets (DescribeSubnets, CreateSubnet, DeleteSubnet). A subnet's free addresses are its
//! size less AWS's five reserved ones less the `ec2/ip/<subnet>/` keys the task launcher holds.

use std::collections::HashMap;

use model::ec2::{self, NetworkInterface, Subnet};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::common::{
    bool_str, check_filters, matches, new_id, spec_tags, well_formed, zones, Cidr, Filter,
    TagSpecification,
};
use super::error::{invalid, missing, Ec2Error, Result};
use super::vpcs::existing_vpc;
use super::{delete, input, put_json, Ec2Context, MAX_ATTEMPTS};

/// Addresses AWS keeps in every subnet (network, router, DNS, future use, broadcast).
const RESERVED: i64 = 5;

/// How many addresses are held in each subnet.
async fn addresses_in_use(ctx: &Ec2Context) -> Result<HashMap<String, i64>> {
    let keys = ctx.store.range("ec2/ip/", Default::default()).await?;
    let mut used: HashMap<String, i64> = HashMap::new();
    for kv in keys.kvs {
        if let Some(subnet) = kv
            .key
            .strip_prefix("ec2/ip/")
            .and_then(|rest| rest.split('/').next())
        {
            *used.entry(subnet.to_string()).or_default() += 1;
        }
    }
    Ok(used)
}

fn available(subnet: &Subnet, used: &HashMap<String, i64>) -> i64 {
    let size = Cidr::parse(&subnet.cidr_block).map_or(0, |c| c.size());
    (size - RESERVED - used.get(&subnet.subnet_id).copied().unwrap_or(0)).max(0)
}

/// A subnet as the model's `Subnet` shape, with the members Wharf derives.
fn output(subnet: &Subnet, used: &HashMap<String, i64>) -> Value {
    let mut value = serde_json::to_value(subnet).unwrap_or_default();
    value["AvailableIpAddressCount"] = json!(available(subnet, used));
    value["AssignIpv6AddressOnCreation"] = json!(false);
    value["Ipv6CidrBlockAssociationSet"] = json!([]);
    value["EnableDns64"] = json!(false);
    value["Ipv6Native"] = json!(false);
    value["MapCustomerOwnedIpOnLaunch"] = json!(false);
    value["PrivateDnsNameOptionsOnLaunch"] = json!({
        "HostnameType": "ip-name",
        "EnableResourceNameDnsARecord": false,
        "EnableResourceNameDnsAAAARecord": false,
    });
    value
}

const SUBNET_FILTERS: &[&str] = &[
    "subnet-id",
    "subnet-arn",
    "vpc-id",
    "availability-zone",
    "availabilityZone",
    "availability-zone-id",
    "availabilityZoneId",
    "available-ip-address-count",
    "availableIpAddressCount",
    "cidr",
    "cidr-block",
    "cidrBlock",
    "default-for-az",
    "defaultForAz",
    "map-public-ip-on-launch",
    "owner-id",
    "state",
    "tag-key",
    "tag-value",
];

fn subnet_values(subnet: &Subnet, used: &HashMap<String, i64>, name: &str) -> Vec<String> {
    let v = match name {
        "subnet-id" => subnet.subnet_id.clone(),
        "subnet-arn" => subnet.subnet_arn.clone(),
        "vpc-id" => subnet.vpc_id.clone(),
        "availability-zone" | "availabilityZone" => subnet.availability_zone.clone(),
        "availability-zone-id" | "availabilityZoneId" => subnet.availability_zone_id.clone(),
        "available-ip-address-count" | "availableIpAddressCount" => {
            available(subnet, used).to_string()
        }
        "cidr" | "cidr-block" | "cidrBlock" => subnet.cidr_block.clone(),
        "default-for-az" | "defaultForAz" => bool_str(subnet.default_for_az),
        "map-public-ip-on-launch" => bool_str(subnet.map_public_ip_on_launch),
        "owner-id" => subnet.owner_id.clone(),
        "state" => subnet.state.clone(),
        _ => return Vec::new(),
    };
    vec![v]
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeSubnetsInput {
    filters: Vec<Filter>,
    subnet_ids: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe_subnets(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeSubnetsInput = input(raw)?;
    check_filters(&request.filters, SUBNET_FILTERS)?;
    let all: Vec<Subnet> = ctx
        .range_json::<Subnet>(ec2::SUBNET_PREFIX)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    for id in &request.subnet_ids {
        if !all.iter().any(|s| &s.subnet_id == id) {
            return Err(if well_formed(id, "subnet") {
                Ec2Error::SubnetNotFound(id.clone())
            } else {
                Ec2Error::SubnetIdMalformed(id.clone())
            });
        }
    }
    let used = addresses_in_use(ctx).await?;
    let items = all
        .into_iter()
        .filter(|s| request.subnet_ids.is_empty() || request.subnet_ids.contains(&s.subnet_id))
        .filter(|s| matches(&request.filters, &s.tags, |n| subnet_values(s, &used, n)))
        .map(|s| (s.subnet_id.clone(), output(&s, &used)))
        .collect();
    let scope = format!(
        "DescribeSubnets {}",
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
    Ok(json!({"Subnets": page, "NextToken": next}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateSubnetInput {
    vpc_id: Option<String>,
    cidr_block: Option<String>,
    availability_zone: Option<String>,
    availability_zone_id: Option<String>,
    tag_specifications: Vec<TagSpecification>,
    ipv6_cidr_block: Option<String>,
    ipv6_native: Option<bool>,
    ipv4_ipam_pool_id: Option<String>,
}

pub async fn create_subnet(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: CreateSubnetInput = input(raw)?;
    if request.ipv6_cidr_block.is_some()
        || request.ipv6_native == Some(true)
        || request.ipv4_ipam_pool_id.is_some()
    {
        // guessed: Wharf has no IPv6 and no IPAM pools.
        return Err(invalid(
            "IPv6 subnets and IPAM pools are not supported by Wharf; give CidrBlock.",
        ));
    }
    let Some(vpc_id) = request.vpc_id else {
        return Err(missing("VpcId"));
    };
    let Some(text) = request.cidr_block else {
        return Err(missing("CidrBlock"));
    };
    let cidr = Cidr::parse(&text).ok_or_else(|| {
        invalid(format!(
            "Value ({text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    let zones = zones(&ctx.region);
    let names = zones
        .iter()
        .map(|z| z.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let chosen = match (&request.availability_zone, &request.availability_zone_id) {
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "Only one of availabilityZone or availabilityZoneId may be specified.".into(), // guessed
            ))
        }
        (Some(name), None) => Some(zones.iter().find(|z| &z.name == name).ok_or_else(|| {
            invalid(format!(
                "Value ({name}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {names}."
            ))
        })?),
        (None, Some(id)) => Some(zones.iter().find(|z| &z.id == id).ok_or_else(|| {
            invalid(format!(
                "Value ({id}) for parameter availabilityZoneId is invalid. Subnets can currently only be created in the following availability zones: {names}." // guessed
            ))
        })?),
        (None, None) => None,
    };
    let tags = spec_tags(&request.tag_specifications, "subnet")?;
    for _ in 0..MAX_ATTEMPTS {
        let (vpc, vpc_revision) = existing_vpc(ctx, &vpc_id).await?;
        let vpc_cidr = Cidr::parse(&vpc.cidr_block).unwrap_or(Cidr { base: 0, len: 0 });
        if !(16..=28).contains(&cidr.len) || !vpc_cidr.contains(&cidr) {
            return Err(Ec2Error::SubnetRange(format!(
                "The CIDR '{text}' is invalid."
            )));
        }
        let siblings: Vec<Subnet> = ctx
            .range_json::<Subnet>(ec2::SUBNET_PREFIX)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| s.vpc_id == vpc_id)
            .collect();
        if siblings
            .iter()
            .any(|s| Cidr::parse(&s.cidr_block).is_some_and(|c| c.overlaps(&cidr)))
        {
            return Err(Ec2Error::SubnetConflict(format!(
                "The CIDR '{text}' conflicts with another subnet"
            )));
        }
        // AWS picks a zone when none is given; spreading by count keeps it predictable.
        let zone = chosen
            .cloned()
            .unwrap_or_else(|| zones[siblings.len() % zones.len()].clone());
        let subnet_id = new_id("subnet");
        let subnet = Subnet {
            subnet_arn: ctx.arn("subnet", &subnet_id),
            subnet_id: subnet_id.clone(),
            vpc_id: vpc_id.clone(),
            cidr_block: cidr.to_string(),
            availability_zone: zone.name,
            availability_zone_id: zone.id,
            available_ip_address_count: cidr.size() - RESERVED,
            default_for_az: false,
            map_public_ip_on_launch: false,
            state: "available".to_string(),
            owner_id: ctx.account_id.clone(),
            tags: tags.clone(),
        };
        let vpc_key = ec2::vpc_key(&vpc_id);
        let key = ec2::subnet_key(&subnet_id);
        // Re-putting the VPC makes concurrent subnet creations (and DeleteVpc) conflict.
        if ctx
            .commit(
                &[(vpc_key.clone(), vpc_revision), (key.clone(), 0)],
                vec![put_json(&vpc_key, &vpc), put_json(&key, &subnet)],
            )
            .await?
        {
            info!(subnet_id, vpc_id, cidr = %subnet.cidr_block, "created subnet");
            return Ok(json!({"Subnet": output(&subnet, &HashMap::new())}));
        }
    }
    Err(Ec2Error::Conflict)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteSubnetInput {
    subnet_id: Option<String>,
}

pub async fn delete_subnet(ctx: &Ec2Context, raw: Value) -> Result<()> {
    let request: DeleteSubnetInput = input(raw)?;
    let Some(id) = request.subnet_id else {
        return Err(missing("SubnetId"));
    };
    if !well_formed(&id, "subnet") {
        return Err(Ec2Error::SubnetIdMalformed(id));
    }
    for _ in 0..MAX_ATTEMPTS {
        let Some((_, revision)) = ctx.get_json::<Subnet>(&ec2::subnet_key(&id)).await? else {
            return Err(Ec2Error::SubnetNotFound(id));
        };
        let enis = ctx
            .range_json::<NetworkInterface>(ec2::NETWORK_INTERFACE_PREFIX)
            .await?;
        let addresses = ctx
            .store
            .range(
                &format!("ec2/ip/{id}/"),
                store::RangeOptions {
                    limit: 1,
                    start_after: None,
                },
            )
            .await?;
        if enis.iter().any(|(e, _)| e.subnet_id == id) || !addresses.kvs.is_empty() {
            return Err(Ec2Error::DependencyViolation(format!(
                "The subnet '{id}' has dependencies and cannot be deleted."
            )));
        }
        let key = ec2::subnet_key(&id);
        if ctx
            .commit(&[(key.clone(), revision)], vec![delete(&key)])
            .await?
        {
            info!(subnet_id = id, "deleted subnet");
            return Ok(());
        }
    }
    Err(Ec2Error::Conflict)
}
