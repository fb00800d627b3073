//! EC2 against a real in-process server: raw signed EC2 Query requests (XML shapes, error
//! envelopes, request ids), the default VPC created once per store, security groups and their
//! rules, VPCs and subnets, tags, pagination, ENIs written by other code; then boto3 and the
//! aws CLI, real clients that nobody here wrote.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use controlplane::Credentials;
use model::ec2::{GroupIdentifier, NetworkInterface};
use store::clock::SystemClock;
use store::{MemoryStore, Store};
use support::{ec2_query, RawResponse, TestServer};

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Every text of `<tag>…</tag>` in document order (no nesting of the same tag in EC2 answers
/// we look at this way).
fn texts(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    out
}

fn text(body: &str, tag: &str) -> String {
    texts(body, tag).into_iter().next().unwrap_or_default()
}

async fn call(server: &TestServer, action: &str, params: &str) -> RawResponse {
    let form = if params.is_empty() {
        format!("Action={action}&Version=2016-11-15")
    } else {
        format!("Action={action}&Version=2016-11-15&{params}")
    };
    ec2_query(server, &form).await
}

/// Call and require success.
async fn ok(server: &TestServer, action: &str, params: &str) -> String {
    let response = call(server, action, params).await;
    assert_eq!(response.status, 200, "{action} {params}: {}", response.body);
    response.body
}

/// Call and require an EC2 error with `code`; returns the message.
async fn fails(server: &TestServer, action: &str, params: &str, code: &str) -> String {
    let response = call(server, action, params).await;
    assert_eq!(response.status, 400, "{action} {params}: {}", response.body);
    assert_eq!(text(&response.body, "Code"), code, "{}", response.body);
    text(&response.body, "Message")
}

fn aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 17
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

async fn default_vpc_id(server: &TestServer) -> String {
    let body = ok(
        server,
        "DescribeVpcs",
        "Filter.1.Name=is-default&Filter.1.Value.1=true",
    )
    .await;
    text(&body, "vpcId")
}

async fn put_eni(server: &TestServer, eni: &NetworkInterface) {
    server
        .store
        .put(
            &model::ec2::network_interface_key(&eni.network_interface_id),
            Bytes::from(serde_json::to_vec(eni).expect("json")),
        )
        .await
        .expect("put eni");
}

fn eni(id: &str, subnet: &str, vpc: &str, ip: &str, group: &str) -> NetworkInterface {
    NetworkInterface {
        network_interface_id: id.to_string(),
        subnet_id: subnet.to_string(),
        vpc_id: vpc.to_string(),
        availability_zone: "us-east-1a".to_string(),
        mac_address: "0e:00:00:00:00:01".to_string(),
        private_ip_address: ip.to_string(),
        status: "in-use".to_string(),
        interface_type: "interface".to_string(),
        description: "arn:aws:ecs:us-east-1:123456789012:attachment/0000".to_string(),
        groups: vec![GroupIdentifier {
            group_id: group.to_string(),
            group_name: String::new(),
        }],
        owner_id: support::ACCOUNT.to_string(),
        requester_id: Some("578734482556".to_string()),
        requester_managed: true,
        source_dest_check: true,
        wharf_task_arn: None,
        tag_set: Vec::new(),
    }
}

#[tokio::test]
async fn the_default_vpc_its_subnets_group_and_zones() {
    let server = support::start().await;
    let response = call(&server, "DescribeVpcs", "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = &response.body;
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{body}"
    );
    assert!(
        body.contains(&format!("<DescribeVpcsResponse xmlns=\"{NS}\"><requestId>")),
        "{body}"
    );
    assert_eq!(
        Some(text(body, "requestId").as_str()),
        response.header("x-amzn-requestid")
    );
    assert_eq!(texts(body, "vpcId").len(), 1, "{body}");
    let vpc = text(body, "vpcId");
    assert!(aws_id(&vpc, "vpc"), "{vpc}");
    assert!(body.contains("<vpcSet><item>"), "{body}");
    assert_eq!(text(body, "cidrBlock"), "172.31.0.0/16");
    assert_eq!(text(body, "isDefault"), "true");
    assert!(body.contains("<state>available</state>"), "{body}");
    assert_eq!(text(body, "ownerId"), support::ACCOUNT);
    assert!(aws_id(&text(body, "dhcpOptionsId"), "dopt"), "{body}");

    let body = ok(
        &server,
        "DescribeSubnets",
        &format!("Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}&Filter.2.Name=default-for-az&Filter.2.Value.1=true"),
    )
    .await;
    let mut cidrs = texts(&body, "cidrBlock");
    cidrs.sort();
    assert_eq!(cidrs, ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]);
    let mut zones = texts(&body, "availabilityZone");
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    let mut zone_ids = texts(&body, "availabilityZoneId");
    zone_ids.sort();
    assert_eq!(zone_ids, ["use1-az1", "use1-az2", "use1-az3"]);
    assert!(texts(&body, "mapPublicIpOnLaunch")
        .iter()
        .all(|v| v == "true"));
    assert!(texts(&body, "availableIpAddressCount")
        .iter()
        .all(|v| v == "4091"));
    assert!(texts(&body, "subnetId").iter().all(|s| aws_id(s, "subnet")));
    // Wildcards.
    let body = ok(&server, "DescribeSubnets", "Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1%3F&Filter.2.Name=cidr-block&Filter.2.Value.1=172.31.16.*").await;
    assert_eq!(texts(&body, "subnetId").len(), 1, "{body}");
    assert_eq!(text(&body, "availabilityZone"), "us-east-1b");

    let body = ok(
        &server,
        "DescribeSecurityGroups",
        "Filter.1.Name=group-name&Filter.1.Value.1=default",
    )
    .await;
    assert!(body.contains("<securityGroupInfo><item>"), "{body}");
    let group = text(&body, "groupId");
    assert!(aws_id(&group, "sg"), "{body}");
    assert_eq!(
        text(&body, "groupDescription"),
        "default VPC security group"
    );
    assert_eq!(text(&body, "vpcId"), vpc);
    // Ingress: all traffic from the group itself; egress: all traffic to anywhere.
    let ingress = text(&body, "ipPermissions");
    assert_eq!(text(&ingress, "ipProtocol"), "-1");
    assert!(
        ingress.contains(&format!("<groups><item><groupId>{group}</groupId>"))
            || ingress.contains(&format!("<groupId>{group}</groupId>")),
        "{ingress}"
    );
    let egress = text(&body, "ipPermissionsEgress");
    assert_eq!(text(&egress, "cidrIp"), "0.0.0.0/0");

    let body = ok(&server, "DescribeAvailabilityZones", "").await;
    assert!(body.contains("<availabilityZoneInfo><item>"), "{body}");
    assert_eq!(
        texts(&body, "zoneName"),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
    assert_eq!(texts(&body, "zoneId"), ["use1-az1", "use1-az2", "use1-az3"]);
    assert!(texts(&body, "zoneState").iter().all(|s| s == "available"));
    assert!(texts(&body, "zoneType")
        .iter()
        .all(|s| s == "availability-zone"));
    let body = ok(
        &server,
        "DescribeAvailabilityZones",
        "ZoneName.1=us-east-1b",
    )
    .await;
    assert_eq!(texts(&body, "zoneName"), ["us-east-1b"]);
    server.server.shutdown().await;
}

#[tokio::test]
async fn defaults_are_created_once_per_store() {
    let clock: Arc<dyn store::clock::Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let credentials = Credentials::generate();
    let (a, b) = tokio::join!(
        support::start_on(
            store.clone(),
            clock.clone(),
            Default::default(),
            credentials.clone()
        ),
        support::start_on(
            store.clone(),
            clock.clone(),
            Default::default(),
            credentials.clone()
        ),
    );
    let c = support::start_on(store.clone(), clock, Default::default(), credentials).await;
    for server in [&a, &b, &c] {
        let body = ok(server, "DescribeVpcs", "").await;
        assert_eq!(texts(&body, "vpcId").len(), 1, "{body}");
        let body = ok(server, "DescribeSubnets", "").await;
        assert_eq!(texts(&body, "subnetId").len(), 3, "{body}");
        let body = ok(server, "DescribeSecurityGroups", "").await;
        assert_eq!(texts(&body, "groupName"), ["default"], "{body}");
    }
    for server in [a, b, c] {
        server.server.shutdown().await;
    }
}

#[tokio::test]
async fn errors_use_the_ec2_envelope() {
    let server = support::start().await;
    let response = call(&server, "DescribeVpcs", "VpcId.1=vpc-0000000000000000a").await;
    assert_eq!(response.status, 400);
    assert!(
        response.body.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>InvalidVpcID.NotFound</Code>\
             <Message>The vpc ID 'vpc-0000000000000000a' does not exist</Message></Error></Errors><RequestID>"
        ),
        "{}",
        response.body
    );
    assert_eq!(
        Some(text(&response.body, "RequestID").as_str()),
        response.header("x-amzn-requestid")
    );
    fails(
        &server,
        "DescribeVpcs",
        "VpcId.1=nope",
        "InvalidVpcID.Malformed",
    )
    .await;
    let message = fails(
        &server,
        "DescribeSubnets",
        "SubnetId.1=subnet-0000000000000000a",
        "InvalidSubnetID.NotFound",
    )
    .await;
    assert_eq!(
        message,
        "The subnet ID 'subnet-0000000000000000a' does not exist"
    );
    let message = fails(
        &server,
        "DescribeSecurityGroups",
        "GroupId.1=sg-0000000000000000a",
        "InvalidGroup.NotFound",
    )
    .await;
    assert_eq!(
        message,
        "The security group 'sg-0000000000000000a' does not exist"
    );
    fails(
        &server,
        "DescribeNetworkInterfaces",
        "NetworkInterfaceId.1=eni-0000000000000000a",
        "InvalidNetworkInterfaceID.NotFound",
    )
    .await;
    let message = fails(
        &server,
        "DescribeVpcs",
        "Filter.1.Name=bogus&Filter.1.Value.1=x",
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(message, "The filter 'bogus' is invalid");
    fails(&server, "RunInstances", "", "InvalidAction").await;
    fails(
        &server,
        "DescribeVpcs",
        "MaxResults=lots",
        "InvalidParameterValue",
    )
    .await;
    fails(
        &server,
        "DescribeVpcs",
        "MaxResults=2",
        "InvalidParameterValue",
    )
    .await;
    fails(
        &server,
        "DescribeVpcs",
        "NextToken=forged",
        "InvalidPaginationToken",
    )
    .await;
    let response = call(&server, "DescribeVpcs", "DryRun=true").await;
    assert_eq!(response.status, 412, "{}", response.body);
    assert_eq!(text(&response.body, "Code"), "DryRunOperation");
    server.server.shutdown().await;
}

#[tokio::test]
async fn security_groups_and_rules() {
    let server = support::start().await;
    let vpc = default_vpc_id(&server).await;
    let body = ok(
        &server,
        "CreateSecurityGroup",
        "GroupName=web&GroupDescription=web+servers&TagSpecification.1.ResourceType=security-group&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web",
    )
    .await;
    assert!(body.contains("<CreateSecurityGroupResponse"), "{body}");
    let web = text(&body, "groupId");
    assert!(aws_id(&web, "sg"), "{body}");
    assert_eq!(
        text(&body, "securityGroupArn"),
        format!(
            "arn:aws:ec2:us-east-1:{}:security-group/{web}",
            support::ACCOUNT
        )
    );
    assert!(
        body.contains("<tagSet><item><key>Name</key><value>web</value></item></tagSet>"),
        "{body}"
    );
    let db = text(
        &ok(
            &server,
            "CreateSecurityGroup",
            &format!("GroupName=db&GroupDescription=db&VpcId={vpc}"),
        )
        .await,
        "groupId",
    );

    // AWS's validation.
    let message = fails(
        &server,
        "CreateSecurityGroup",
        "GroupName=WEB&GroupDescription=x",
        "InvalidGroup.Duplicate",
    )
    .await;
    assert_eq!(
        message,
        format!("The security group 'WEB' already exists for VPC '{vpc}'")
    );
    fails(
        &server,
        "CreateSecurityGroup",
        "GroupName=sg-x&GroupDescription=x",
        "InvalidParameterValue",
    )
    .await;
    fails(
        &server,
        "CreateSecurityGroup",
        "GroupName=x",
        "MissingParameter",
    )
    .await;
    fails(
        &server,
        "CreateSecurityGroup",
        "GroupName=x&GroupDescription=x&VpcId=vpc-0000000000000000a",
        "InvalidVpcID.NotFound",
    )
    .await;
    fails(
        &server,
        "CreateSecurityGroup",
        "GroupName=x%3Cy&GroupDescription=x",
        "InvalidParameterValue",
    )
    .await;

    // Ingress with IpRanges and a group pair, in one call.
    let body = ok(
        &server,
        "AuthorizeSecurityGroupIngress",
        &format!(
            "GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432\
             &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.5%2F16&IpPermissions.1.IpRanges.1.Description=office\
             &IpPermissions.1.Groups.1.GroupId={web}"
        ),
    )
    .await;
    assert_eq!(text(&body, "return"), "true");
    let rules = texts(&body, "securityGroupRuleId");
    assert_eq!(rules.len(), 2, "{body}");
    assert!(rules.iter().all(|r| aws_id(r, "sgr")), "{body}");
    // CIDRs are canonicalised.
    assert!(body.contains("<cidrIpv4>10.0.0.0/16</cidrIpv4>"), "{body}");
    assert!(
        body.contains(&format!("<referencedGroupInfo><groupId>{web}</groupId>")),
        "{body}"
    );
    assert!(body.contains("<isEgress>false</isEgress>"), "{body}");

    // The same rule again, even written differently, is a duplicate.
    let message = fails(
        &server,
        "AuthorizeSecurityGroupIngress",
        &format!("GroupId={db}&IpProtocol=tcp&FromPort=5432&ToPort=5432&CidrIp=10.0.1.1%2F16"),
        "InvalidPermission.Duplicate",
    )
    .await;
    assert_eq!(
        message,
        "the specified rule \"peer: 10.0.0.0/16, TCP, from port: 5432, to port: 5432, ALLOW\" already exists"
    );
    // The legacy flat form, and by group name in the default VPC.
    ok(
        &server,
        "AuthorizeSecurityGroupIngress",
        "GroupName=db&IpProtocol=udp&FromPort=53&ToPort=53&CidrIp=0.0.0.0%2F0",
    )
    .await;
    fails(
        &server,
        "AuthorizeSecurityGroupIngress",
        &format!("GroupId={db}&IpProtocol=tcp&CidrIp=0.0.0.0%2F0"),
        "InvalidParameterValue",
    )
    .await;
    fails(
        &server,
        "AuthorizeSecurityGroupIngress",
        &format!("GroupId={db}&IpProtocol=tcp&FromPort=1&ToPort=2&CidrIp=10.0.0.0%2F33"),
        "InvalidParameterValue",
    )
    .await;
    fails(&server, "AuthorizeSecurityGroupIngress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=1&IpPermissions.1.Groups.1.GroupId=sg-0000000000000000a"), "InvalidGroup.NotFound").await;
    fails(
        &server,
        "AuthorizeSecurityGroupIngress",
        "GroupId=sg-0000000000000000a&IpProtocol=-1&CidrIp=0.0.0.0%2F0",
        "InvalidGroup.NotFound",
    )
    .await;

    let body = ok(
        &server,
        "DescribeSecurityGroups",
        &format!("GroupId.1={db}"),
    )
    .await;
    let ingress = text(&body, "ipPermissions");
    assert!(
        ingress
            .contains("<ipProtocol>tcp</ipProtocol><fromPort>5432</fromPort><toPort>5432</toPort>"),
        "{ingress}"
    );
    assert!(
        ingress.contains(&format!(
            "<groups><item><userId>{}</userId><groupId>{web}</groupId></item></groups>",
            support::ACCOUNT
        )),
        "{ingress}"
    );
    assert!(ingress.contains("<ipRanges><item><description>office</description><cidrIp>10.0.0.0/16</cidrIp></item></ipRanges>"), "{ingress}");
    assert!(
        ingress.contains("<ipProtocol>udp</ipProtocol>"),
        "{ingress}"
    );
    // Filters on rules.
    let body = ok(
        &server,
        "DescribeSecurityGroups",
        &format!("Filter.1.Name=ip-permission.group-id&Filter.1.Value.1={web}"),
    )
    .await;
    assert_eq!(texts(&body, "groupName"), ["db"], "{body}");
    let body = ok(
        &server,
        "DescribeSecurityGroups",
        "Filter.1.Name=tag%3AName&Filter.1.Value.1=w*",
    )
    .await;
    assert_eq!(text(&body, "groupId"), web, "{body}");

    // DescribeSecurityGroupRules knows the same ids.
    let body = ok(
        &server,
        "DescribeSecurityGroupRules",
        &format!("Filter.1.Name=group-id&Filter.1.Value.1={db}"),
    )
    .await;
    let listed = texts(&body, "securityGroupRuleId");
    assert_eq!(listed.len(), 4, "{body}"); // tcp cidr, tcp group, udp, egress all
    assert!(rules.iter().all(|r| listed.contains(r)), "{body}");

    // Egress.
    let body = ok(&server, "AuthorizeSecurityGroupEgress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32")).await;
    assert!(body.contains("<isEgress>true</isEgress>"), "{body}");
    fails(&server, "AuthorizeSecurityGroupEgress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0"), "InvalidPermission.Duplicate").await;
    ok(&server, "RevokeSecurityGroupEgress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0")).await;

    // Revoke by rule, by rule id; unknown rules.
    let body = ok(&server, "RevokeSecurityGroupIngress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16")).await;
    assert_eq!(text(&body, "return"), "true");
    assert_eq!(
        texts(&body, "securityGroupRuleId"),
        [rules[0].clone()],
        "{body}"
    );
    fails(&server, "RevokeSecurityGroupIngress", &format!("GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16"), "InvalidPermission.NotFound").await;

    // A group referenced by another's rule, or used by an ENI, cannot be deleted.
    let message = fails(
        &server,
        "DeleteSecurityGroup",
        &format!("GroupId={web}"),
        "DependencyViolation",
    )
    .await;
    assert_eq!(message, format!("resource {web} has a dependent object"));
    ok(
        &server,
        "RevokeSecurityGroupIngress",
        &format!("GroupId={db}&SecurityGroupRuleId.1={}", rules[1]),
    )
    .await;
    fails(
        &server,
        "RevokeSecurityGroupIngress",
        &format!("GroupId={db}&SecurityGroupRuleId.1={}", rules[1]),
        "InvalidSecurityGroupRuleId.NotFound",
    )
    .await;
    let subnet = text(&ok(&server, "DescribeSubnets", "").await, "subnetId");
    put_eni(
        &server,
        &eni("eni-0000000000000000e", &subnet, &vpc, "172.31.0.9", &web),
    )
    .await;
    fails(
        &server,
        "DeleteSecurityGroup",
        &format!("GroupId={web}"),
        "DependencyViolation",
    )
    .await;
    server
        .store
        .delete(&model::ec2::network_interface_key("eni-0000000000000000e"))
        .await
        .expect("delete eni");
    let body = ok(&server, "DeleteSecurityGroup", &format!("GroupId={web}")).await;
    assert_eq!(text(&body, "return"), "true");
    ok(&server, "DeleteSecurityGroup", "GroupName=db").await;
    fails(
        &server,
        "DeleteSecurityGroup",
        &format!("GroupId={web}"),
        "InvalidGroup.NotFound",
    )
    .await;
    // The default group stays.
    let default = text(
        &ok(&server, "DescribeSecurityGroups", "GroupName.1=default").await,
        "groupId",
    );
    let message = fails(
        &server,
        "DeleteSecurityGroup",
        &format!("GroupId={default}"),
        "CannotDelete",
    )
    .await;
    assert_eq!(
        message,
        format!("the specified group: \"{default}\" name: \"default\" cannot be deleted by a user")
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn vpcs_subnets_and_their_dependencies() {
    let server = support::start().await;
    let body = ok(&server, "CreateVpc", "CidrBlock=10.0.0.0%2F16&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=main").await;
    assert!(body.contains("<CreateVpcResponse"), "{body}");
    assert!(body.contains("<vpc><ownerId>"), "{body}");
    let vpc = text(&body, "vpcId");
    assert!(aws_id(&vpc, "vpc"));
    assert_eq!(text(&body, "isDefault"), "false");
    assert!(
        body.contains("<cidrBlockAssociationSet><item><associationId>vpc-cidr-assoc-"),
        "{body}"
    );
    // Its own default security group.
    let body = ok(
        &server,
        "DescribeSecurityGroups",
        &format!("Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
    )
    .await;
    assert_eq!(texts(&body, "groupName"), ["default"], "{body}");
    let body = ok(
        &server,
        "DescribeVpcs",
        "Filter.1.Name=tag%3AName&Filter.1.Value.1=main",
    )
    .await;
    assert_eq!(texts(&body, "vpcId"), std::slice::from_ref(&vpc));
    let body = ok(
        &server,
        "DescribeVpcAttribute",
        &format!("VpcId={vpc}&Attribute=enableDnsHostnames"),
    )
    .await;
    assert!(
        body.contains("<enableDnsHostnames><value>false</value></enableDnsHostnames>"),
        "{body}"
    );
    ok(
        &server,
        "ModifyVpcAttribute",
        &format!("VpcId={vpc}&EnableDnsHostnames.Value=true"),
    )
    .await;
    let body = ok(
        &server,
        "DescribeVpcAttribute",
        &format!("VpcId={vpc}&Attribute=enableDnsHostnames"),
    )
    .await;
    assert!(body.contains("<value>true</value>"), "{body}");

    let message = fails(
        &server,
        "CreateVpc",
        "CidrBlock=10.0.0.0%2F8",
        "InvalidVpc.Range",
    )
    .await;
    assert_eq!(message, "The CIDR '10.0.0.0/8' is invalid.");
    fails(
        &server,
        "CreateVpc",
        "CidrBlock=10.0.0.0%2F29",
        "InvalidVpc.Range",
    )
    .await;
    fails(
        &server,
        "CreateVpc",
        "CidrBlock=10.0.0%2F16",
        "InvalidParameterValue",
    )
    .await;
    fails(&server, "CreateVpc", "", "MissingParameter").await;

    let body = ok(
        &server,
        "CreateSubnet",
        &format!("VpcId={vpc}&CidrBlock=10.0.1.0%2F24&AvailabilityZone=us-east-1b"),
    )
    .await;
    let subnet = text(&body, "subnetId");
    assert!(aws_id(&subnet, "subnet"), "{body}");
    assert_eq!(text(&body, "availableIpAddressCount"), "251");
    assert_eq!(text(&body, "availabilityZoneId"), "use1-az2");
    assert_eq!(text(&body, "defaultForAz"), "false");
    assert_eq!(
        text(&body, "subnetArn"),
        format!("arn:aws:ec2:us-east-1:{}:subnet/{subnet}", support::ACCOUNT)
    );
    let message = fails(
        &server,
        "CreateSubnet",
        &format!("VpcId={vpc}&CidrBlock=10.0.1.128%2F25"),
        "InvalidSubnet.Conflict",
    )
    .await;
    assert_eq!(
        message,
        "The CIDR '10.0.1.128/25' conflicts with another subnet"
    );
    fails(
        &server,
        "CreateSubnet",
        &format!("VpcId={vpc}&CidrBlock=10.1.0.0%2F24"),
        "InvalidSubnet.Range",
    )
    .await;
    fails(
        &server,
        "CreateSubnet",
        &format!("VpcId={vpc}&CidrBlock=10.0.2.0%2F29"),
        "InvalidSubnet.Range",
    )
    .await;
    fails(
        &server,
        "CreateSubnet",
        &format!("VpcId={vpc}&CidrBlock=10.0.2.0%2F24&AvailabilityZone=us-east-1z"),
        "InvalidParameterValue",
    )
    .await;
    fails(
        &server,
        "CreateSubnet",
        "VpcId=vpc-0000000000000000a&CidrBlock=10.0.2.0%2F24",
        "InvalidVpcID.NotFound",
    )
    .await;

    // Addresses held by tasks count against the subnet and keep it.
    server
        .store
        .put(
            &model::ec2::ip_key(&subnet, "10.0.1.4"),
            Bytes::from_static(b"eni-0000000000000000f"),
        )
        .await
        .expect("put ip");
    let body = ok(&server, "DescribeSubnets", &format!("SubnetId.1={subnet}")).await;
    assert_eq!(text(&body, "availableIpAddressCount"), "250");
    let message = fails(
        &server,
        "DeleteVpc",
        &format!("VpcId={vpc}"),
        "DependencyViolation",
    )
    .await;
    assert_eq!(
        message,
        format!("The vpc '{vpc}' has dependencies and cannot be deleted.")
    );
    fails(
        &server,
        "DeleteSubnet",
        &format!("SubnetId={subnet}"),
        "DependencyViolation",
    )
    .await;
    server
        .store
        .delete(&model::ec2::ip_key(&subnet, "10.0.1.4"))
        .await
        .expect("delete ip");
    let body = ok(&server, "DeleteSubnet", &format!("SubnetId={subnet}")).await;
    assert!(body.contains("<return>true</return>"), "{body}");
    fails(
        &server,
        "DeleteSubnet",
        &format!("SubnetId={subnet}"),
        "InvalidSubnetID.NotFound",
    )
    .await;
    // A non-default group keeps the VPC too.
    let group = text(
        &ok(
            &server,
            "CreateSecurityGroup",
            &format!("GroupName=app&GroupDescription=app&VpcId={vpc}"),
        )
        .await,
        "groupId",
    );
    fails(
        &server,
        "DeleteVpc",
        &format!("VpcId={vpc}"),
        "DependencyViolation",
    )
    .await;
    ok(&server, "DeleteSecurityGroup", &format!("GroupId={group}")).await;
    ok(&server, "DeleteVpc", &format!("VpcId={vpc}")).await;
    fails(
        &server,
        "DescribeVpcs",
        &format!("VpcId.1={vpc}"),
        "InvalidVpcID.NotFound",
    )
    .await;
    let body = ok(
        &server,
        "DescribeSecurityGroups",
        &format!("Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
    )
    .await;
    assert!(texts(&body, "groupId").is_empty(), "{body}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn network_interfaces_written_by_other_code_are_described() {
    let server = support::start().await;
    let vpc = default_vpc_id(&server).await;
    let body = ok(
        &server,
        "DescribeSubnets",
        "Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1a",
    )
    .await;
    let subnet = text(&body, "subnetId");
    let group = text(
        &ok(&server, "DescribeSecurityGroups", "GroupName.1=default").await,
        "groupId",
    );
    put_eni(
        &server,
        &eni("eni-0000000000000000a", &subnet, &vpc, "172.31.0.4", &group),
    )
    .await;
    let mut other = eni("eni-0000000000000000b", &subnet, &vpc, "172.31.0.5", &group);
    other.status = "available".into();
    put_eni(&server, &other).await;
    server
        .store
        .put(
            &model::ec2::ip_key(&subnet, "172.31.0.4"),
            Bytes::from_static(b"eni-0000000000000000a"),
        )
        .await
        .expect("put ip");

    let body = ok(&server, "DescribeNetworkInterfaces", "").await;
    assert!(body.contains("<networkInterfaceSet><item>"), "{body}");
    assert_eq!(
        texts(&body, "networkInterfaceId"),
        ["eni-0000000000000000a", "eni-0000000000000000b"]
    );
    assert!(body.contains(&format!("<groupSet><item><groupId>{group}</groupId><groupName>default</groupName></item></groupSet>")), "{body}");
    assert!(body.contains("<privateIpAddressesSet><item><primary>true</primary><privateDnsName>ip-172-31-0-4.ec2.internal</privateDnsName><privateIpAddress>172.31.0.4</privateIpAddress></item></privateIpAddressesSet>"), "{body}");
    assert!(
        !body.contains("wharf"),
        "Wharf's own fields stay off the wire: {body}"
    );
    for (filter, value, expect) in [
        ("network-interface-id", "eni-0000000000000000b", 1),
        ("subnet-id", subnet.as_str(), 2),
        ("vpc-id", vpc.as_str(), 2),
        ("private-ip-address", "172.31.0.4", 1),
        ("status", "in-use", 1),
        ("group-id", group.as_str(), 2),
        ("availability-zone", "us-east-1a", 2),
        ("availability-zone", "us-east-1b", 0),
        ("description", "arn:aws:ecs:*:attachment/*", 2),
    ] {
        let body = ok(
            &server,
            "DescribeNetworkInterfaces",
            &format!(
                "Filter.1.Name={filter}&Filter.1.Value.1={}",
                urlencode(value)
            ),
        )
        .await;
        assert_eq!(
            texts(&body, "networkInterfaceId").len(),
            expect,
            "{filter}={value}: {body}"
        );
    }
    let body = ok(
        &server,
        "DescribeNetworkInterfaces",
        "NetworkInterfaceId.1=eni-0000000000000000b",
    )
    .await;
    assert_eq!(
        texts(&body, "networkInterfaceId"),
        ["eni-0000000000000000b"]
    );
    // The held address counts against the subnet.
    let body = ok(&server, "DescribeSubnets", &format!("SubnetId.1={subnet}")).await;
    assert_eq!(text(&body, "availableIpAddressCount"), "4090");
    // ENIs take tags like the rest.
    ok(
        &server,
        "CreateTags",
        "ResourceId.1=eni-0000000000000000a&Tag.1.Key=team&Tag.1.Value=web",
    )
    .await;
    let body = ok(
        &server,
        "DescribeNetworkInterfaces",
        "Filter.1.Name=tag%3Ateam&Filter.1.Value.1=web",
    )
    .await;
    assert_eq!(
        texts(&body, "networkInterfaceId"),
        ["eni-0000000000000000a"]
    );
    server.server.shutdown().await;
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn tags_and_pagination() {
    let server = support::start().await;
    let vpc = default_vpc_id(&server).await;
    let subnet = text(&ok(&server, "DescribeSubnets", "").await, "subnetId");
    ok(&server, "CreateTags", &format!("ResourceId.1={vpc}&ResourceId.2={subnet}&Tag.1.Key=Env&Tag.1.Value=dev&Tag.2.Key=Owner&Tag.2.Value=me")).await;
    let body = ok(
        &server,
        "DescribeVpcs",
        "Filter.1.Name=tag-key&Filter.1.Value.1=Owner",
    )
    .await;
    assert_eq!(texts(&body, "vpcId"), std::slice::from_ref(&vpc));
    assert!(body.contains("<tagSet><item><key>Env</key><value>dev</value></item><item><key>Owner</key><value>me</value></item></tagSet>"), "{body}");
    let body = ok(
        &server,
        "DescribeTags",
        "Filter.1.Name=key&Filter.1.Value.1=Env",
    )
    .await;
    assert_eq!(texts(&body, "resourceId").len(), 2, "{body}");
    assert!(body.contains(&format!("<item><key>Env</key><resourceId>{subnet}</resourceId><resourceType>subnet</resourceType><value>dev</value></item>")), "{body}");
    let body = ok(
        &server,
        "DescribeTags",
        &format!("Filter.1.Name=resource-id&Filter.1.Value.1={vpc}"),
    )
    .await;
    assert_eq!(texts(&body, "key"), ["Env", "Owner"]);
    // A value given must match; none deletes whatever the value.
    ok(
        &server,
        "DeleteTags",
        &format!("ResourceId.1={vpc}&Tag.1.Key=Env&Tag.1.Value=prod"),
    )
    .await;
    ok(
        &server,
        "DeleteTags",
        &format!("ResourceId.1={vpc}&Tag.1.Key=Owner"),
    )
    .await;
    let body = ok(
        &server,
        "DescribeTags",
        &format!("Filter.1.Name=resource-id&Filter.1.Value.1={vpc}"),
    )
    .await;
    assert_eq!(texts(&body, "key"), ["Env"]);
    fails(
        &server,
        "CreateTags",
        "ResourceId.1=vpc-0000000000000000a&Tag.1.Key=a&Tag.1.Value=b",
        "InvalidVpcID.NotFound",
    )
    .await;
    fails(
        &server,
        "CreateTags",
        "ResourceId.1=i-0000000000000000a&Tag.1.Key=a&Tag.1.Value=b",
        "InvalidID",
    )
    .await;
    fails(
        &server,
        "CreateTags",
        &format!("ResourceId.1={vpc}&Tag.1.Key=aws%3Ax&Tag.1.Value=b"),
        "InvalidParameterValue",
    )
    .await;

    for i in 0..7 {
        ok(
            &server,
            "CreateSecurityGroup",
            &format!("GroupName=g{i}&GroupDescription=g"),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = match &token {
            Some(t) => format!("MaxResults=5&NextToken={t}"),
            None => "MaxResults=5".to_string(),
        };
        let body = ok(&server, "DescribeSecurityGroups", &params).await;
        pages += 1;
        seen.extend(texts(&body, "groupName"));
        token = texts(&body, "nextToken").into_iter().next();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    seen.sort();
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen.contains(&"default".to_string()) && seen.contains(&"g6".to_string()));
    server.server.shutdown().await;
}

/// boto3 (botocore's EC2 serializer and parser), then the aws CLI.
#[tokio::test]
async fn boto3_and_the_aws_cli_speak_ec2() {
    let Ok(venv) = std::env::var("WHARF_E2E_VENV") else {
        eprintln!("skipping boto3_and_the_aws_cli_speak_ec2: WHARF_E2E_VENV is not set (scripts/test sets it)");
        return;
    };
    let server = support::start().await;
    let vpc = default_vpc_id(&server).await;
    let subnet = text(
        &ok(
            &server,
            "DescribeSubnets",
            "Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1a",
        )
        .await,
        "subnetId",
    );
    let group = text(
        &ok(&server, "DescribeSecurityGroups", "GroupName.1=default").await,
        "groupId",
    );
    put_eni(
        &server,
        &eni("eni-0000000000000000c", &subnet, &vpc, "172.31.0.7", &group),
    )
    .await;
    let script = r#"
import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2")
vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
assert len(vpcs) == 1, vpcs
vpc = vpcs[0]
assert vpc["CidrBlock"] == "172.31.0.0/16" and vpc["IsDefault"] is True and vpc["State"] == "available", vpc
subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
assert sorted(s["CidrBlock"] for s in subnets) == ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"], subnets
assert all(s["MapPublicIpOnLaunch"] is True and isinstance(s["AvailableIpAddressCount"], int) for s in subnets), subnets
zones = ec2.describe_availability_zones()["AvailabilityZones"]
assert [z["ZoneName"] for z in zones] == ["us-east-1a", "us-east-1b", "us-east-1c"], zones
assert zones[0]["ZoneId"] == "use1-az1" and zones[0]["State"] == "available" and zones[0]["ZoneType"] == "availability-zone", zones
default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
assert default["IpPermissions"][0]["IpProtocol"] == "-1", default
assert default["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == default["GroupId"], default
assert default["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}], default

created = ec2.create_security_group(GroupName="boto-web", Description="from boto3", VpcId=vpc["VpcId"],
    TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": "boto"}]}])
gid = created["GroupId"]
out = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}]},
    {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": default["GroupId"]}]},
])
assert out["Return"] is True and len(out["SecurityGroupRules"]) == 2, out
assert out["SecurityGroupRules"][0]["CidrIpv4"] == "0.0.0.0/0" and out["SecurityGroupRules"][0]["FromPort"] == 80, out
try:
    ec2.authorize_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    raise SystemExit("duplicate accepted")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidPermission.Duplicate", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.response["ResponseMetadata"]["RequestId"], e.response
sg = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
assert sg["GroupName"] == "boto-web" and sg["Description"] == "from boto3" and sg["Tags"] == [{"Key": "Name", "Value": "boto"}], sg
assert {p["FromPort"] for p in sg["IpPermissions"]} == {80, 8080}, sg
ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
sg = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
assert [p["FromPort"] for p in sg["IpPermissions"]] == [8080], sg
ec2.delete_security_group(GroupId=gid)
try:
    ec2.describe_security_groups(GroupIds=[gid])
    raise SystemExit("deleted group still described")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidGroup.NotFound", e.response

new_vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]
ec2.get_waiter("vpc_available").wait(VpcIds=[new_vpc["VpcId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 3})
sub = ec2.create_subnet(VpcId=new_vpc["VpcId"], CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1c")["Subnet"]
assert sub["AvailableIpAddressCount"] == 251 and sub["AvailabilityZone"] == "us-east-1c", sub
ec2.create_tags(Resources=[sub["SubnetId"]], Tags=[{"Key": "tier", "Value": "private"}])
tagged = ec2.describe_subnets(Filters=[{"Name": "tag:tier", "Values": ["priv*"]}])["Subnets"]
assert [s["SubnetId"] for s in tagged] == [sub["SubnetId"]], tagged
try:
    ec2.create_subnet(VpcId=new_vpc["VpcId"], CidrBlock="10.20.1.0/25")
    raise SystemExit("overlap accepted")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidSubnet.Conflict", e.response
try:
    ec2.delete_vpc(VpcId=new_vpc["VpcId"])
    raise SystemExit("vpc with a subnet deleted")
except ClientError as e:
    assert e.response["Error"]["Code"] == "DependencyViolation", e.response
ec2.delete_subnet(SubnetId=sub["SubnetId"])
ec2.delete_vpc(VpcId=new_vpc["VpcId"])
try:
    ec2.describe_vpcs(VpcIds=[new_vpc["VpcId"]])
    raise SystemExit("deleted vpc still described")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidVpcID.NotFound", e.response
    assert "does not exist" in e.response["Error"]["Message"], e.response

enis = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [SUBNET]}])["NetworkInterfaces"]
assert [e["NetworkInterfaceId"] for e in enis] == ["eni-0000000000000000c"], enis
eni = enis[0]
assert eni["PrivateIpAddress"] == "172.31.0.7" and eni["Status"] == "in-use" and eni["Groups"][0]["GroupName"] == "default", eni
assert eni["PrivateIpAddresses"][0]["Primary"] is True, eni
assert eni["RequesterManaged"] is True, eni
pages = ec2.get_paginator("describe_network_interfaces").paginate(PaginationConfig={"PageSize": 5})
assert [e["NetworkInterfaceId"] for p in pages for e in p["NetworkInterfaces"]] == ["eni-0000000000000000c"]
print("boto3 ok")
"#
    .replace("SUBNET", &format!("{subnet:?}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ec2_boto3.py");
    std::fs::write(&path, script).expect("script");
    let env = [
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_DEFAULT_REGION", support::REGION.to_string()),
        (
            "AWS_ACCESS_KEY_ID",
            server.credentials.access_key_id.clone(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            server.credentials.secret_access_key.clone(),
        ),
    ];
    let output = tokio::process::Command::new(format!("{venv}/bin/python"))
        .arg(&path)
        .envs(env.clone())
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "boto3 script failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = tokio::process::Command::new(format!("{venv}/bin/aws"))
        .args(["ec2", "describe-vpcs", "--output", "json"])
        .envs(env)
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("aws runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(listed["Vpcs"][0]["VpcId"], vpc.as_str());
    assert_eq!(listed["Vpcs"][0]["IsDefault"], true);
    server.server.shutdown().await;
}
