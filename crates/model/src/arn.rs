//! ARNs in AWS's formats. ECS uses the "long" ARN format throughout, e.g.
//! `arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef`.

/// Where resources live: the partition is always `aws`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub account_id: String,
}

impl Scope {
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account_id: account_id.into(),
        }
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account_id
        )
    }

    pub fn cluster_arn(&self, cluster_name: &str) -> String {
        self.arn("ecs", &format!("cluster/{cluster_name}"))
    }

    pub fn task_definition_arn(&self, family: &str, revision: i64) -> String {
        self.arn("ecs", &format!("task-definition/{family}:{revision}"))
    }

    pub fn task_arn(&self, cluster_name: &str, task_id: &str) -> String {
        self.arn("ecs", &format!("task/{cluster_name}/{task_id}"))
    }

    pub fn container_instance_arn(&self, cluster_name: &str, id: &str) -> String {
        self.arn("ecs", &format!("container-instance/{cluster_name}/{id}"))
    }

    pub fn service_arn(&self, cluster_name: &str, service_name: &str) -> String {
        self.arn("ecs", &format!("service/{cluster_name}/{service_name}"))
    }

    /// The principal ARN of the account root, used as the default for account settings.
    pub fn root_principal_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account_id)
    }
}

/// The parts of a parsed ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account_id: String,
    /// Everything after the fifth colon, e.g. `cluster/default` or `task-definition/web:3`.
    pub resource: String,
}

impl Arn {
    pub fn parse(text: &str) -> Option<Arn> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?.to_string();
        let service = parts.next()?.to_string();
        let region = parts.next()?.to_string();
        let account_id = parts.next()?.to_string();
        let resource = parts.next()?.to_string();
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Arn {
            partition,
            service,
            region,
            account_id,
            resource,
        })
    }

    /// The resource type (`cluster`, `task`, `task-definition`, …) and the rest after `/`.
    pub fn resource_type(&self) -> (&str, &str) {
        self.resource
            .split_once('/')
            .unwrap_or((&self.resource, ""))
    }
}

/// A 32-hex-digit id as ECS uses for tasks and container instances, from 16 random bytes the
/// caller drew.
pub fn hex_id(random: [u8; 16]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 32-hex-digit id that sorts by creation time: 48 bits of milliseconds since the epoch, then
/// 80 random bits. It looks like any ECS task id, and stored keys built from it are appended at
/// the end of the store's index instead of scattered through it (random ids made every insert
/// rewrite a different index page).
pub fn time_ordered_hex_id(now_millis: i64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(now_millis.max(0) as u64).to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    hex_id(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_ecs_arns() {
        let scope = Scope::new("us-east-1", "123456789012");
        let arn = scope.task_definition_arn("web", 3);
        assert_eq!(
            arn,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"
        );
        let parsed = Arn::parse(&arn).expect("parses");
        assert_eq!(parsed.service, "ecs");
        assert_eq!(parsed.resource_type(), ("task-definition", "web:3"));
        assert_eq!(Arn::parse("arn:aws:ecs"), None);
        assert_eq!(Arn::parse("cluster/default"), None);
    }

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let earlier = time_ordered_hex_id(1_795_000_000_000, [0xff; 10]);
        let later = time_ordered_hex_id(1_795_000_000_001, [0x00; 10]);
        assert!(earlier < later);
        assert_eq!(later.len(), 32);
    }

    #[test]
    fn hex_ids_are_32_lowercase_digits() {
        let id = hex_id([0xab; 16]);
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
