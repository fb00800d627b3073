//! The default VPC every AWS account starts with: `172.31.0.0/16`, one default subnet per
//! availability zone (`172.31.0.0/20`, `172.31.16.0/20`, `172.31.32.0/20`) and the VPC's
//! `default` security group, created once per store by whichever server starts first.

use model::ec2::{self, Subnet, Vpc, DEFAULT_VPC_KEY};
use store::StoreError;
use tracing::info;

use super::common::{new_id, zones, Cidr};
use super::security_groups::default_group;
use super::{guard, put_json, Ec2Context};

pub const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";

/// Create the default VPC, its subnets and default security group if they do not exist yet
/// (idempotent; called at every start). The marker key is created in the same transaction, if
/// absent, so servers starting together on one store create exactly one default VPC.
pub async fn ensure_defaults(ctx: &Ec2Context) -> Result<(), StoreError> {
    if ctx.store.get(DEFAULT_VPC_KEY).await?.is_some() {
        return Ok(());
    }
    let vpc_id = new_id("vpc");
    let vpc = Vpc {
        vpc_id: vpc_id.clone(),
        cidr_block: DEFAULT_VPC_CIDR.to_string(),
        state: "available".to_string(),
        is_default: true,
        owner_id: ctx.account_id.clone(),
        instance_tenancy: "default".to_string(),
        dhcp_options_id: new_id("dopt"),
        tags: Vec::new(),
    };
    let mut ops = vec![
        store::Op::Put {
            key: DEFAULT_VPC_KEY.to_string(),
            value: bytes::Bytes::from(vpc_id.clone()),
            lease: None,
        },
        put_json(&ec2::vpc_key(&vpc_id), &vpc),
    ];
    for (i, zone) in zones(&ctx.region).into_iter().enumerate() {
        let cidr = Cidr {
            base: u32::from(std::net::Ipv4Addr::new(172, 31, 16 * i as u8, 0)),
            len: 20,
        };
        let subnet_id = new_id("subnet");
        let subnet = Subnet {
            subnet_arn: ctx.arn("subnet", &subnet_id),
            subnet_id: subnet_id.clone(),
            vpc_id: vpc_id.clone(),
            cidr_block: cidr.to_string(),
            availability_zone: zone.name,
            availability_zone_id: zone.id,
            available_ip_address_count: cidr.size() - 5,
            default_for_az: true,
            map_public_ip_on_launch: true,
            state: "available".to_string(),
            owner_id: ctx.account_id.clone(),
            tags: Vec::new(),
        };
        ops.push(put_json(&ec2::subnet_key(&subnet_id), &subnet));
    }
    let group = default_group(ctx, &vpc_id);
    ops.push(put_json(&ec2::security_group_key(&group.group_id), &group));
    let response = ctx
        .store
        .txn(store::Txn {
            compares: vec![guard(DEFAULT_VPC_KEY, 0)],
            success: ops,
            failure: vec![],
        })
        .await?;
    if response.succeeded {
        info!(vpc_id, "created the default VPC");
    }
    Ok(())
}
