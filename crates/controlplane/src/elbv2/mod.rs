//! Elastic Load Balancing v2 (`elasticloadbalancing`, the Query protocol with XML answers):
//! application and network load balancers, target groups and their targets, listeners and
//! rules, tags; and the server side of the load-balancer protocol (`routes`) through which a
//! `wharf lb` data plane fetches route snapshots and reports target health, load-balancer
//! state and request metrics (`model::elb` documents it).
//!
//! A request is a form body decoded with the shapes generated from the model (`shapes`) into
//! the canonical value, handled once per operation, and answered as XML. Errors are one enum
//! (`error::Elbv2Error`) mapped to the model's codes in one place.
//!
//! Store layout (everything under `model::elb::keys::PREFIX`, so one watch sees what a data
//! plane must hear about):
//!
//! ```text
//! elbv2/lb/<name>                          LoadBalancerRecord (JSON)
//! elbv2/address/<ipv4>                     ARN of the load balancer holding that address
//!                                          (created only if absent: no two share one)
//! elbv2/tg/<name>                          model::elb::TargetGroupRecord (JSON), also
//!                                          written by the ECS service scheduler (CAS)
//! elbv2/listener/<lb id>/<listener id>     ListenerRecord (JSON), with its default actions
//! elbv2/rule/<listener id>/<rule id>       RuleRecord (JSON), the non-default rules
//! elbv2/health/<target group id>           model::elb::TargetHealthRecord (JSON): observed
//!                                          health, written only from data-plane reports
//! ```
//!
//! Writes are compare-and-swap transactions on the revisions read. Creating a listener
//! re-puts its load balancer, and creating or re-prioritising a rule re-puts its listener, so
//! concurrent creates cannot both take one port or one priority; deleting a load balancer
//! compares every listener and rule it deletes. Every write of actions (creating or modifying
//! a listener or rule) also re-puts each target group it forwards to, unchanged, compared on
//! the revision read before the listeners and rules it checked (`Topology::claim_groups`):
//! two load balancers taking one group concurrently, or a forward racing DeleteTargetGroup
//! (which compares the group's revision too), cannot both commit.

mod error;
mod listeners;
mod load_balancers;
mod records;
mod routes;
mod rules;
mod shapes;
mod tags;
mod target_groups;
mod targets;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use bytes::Bytes;
use metricstore::MetricStore;
use model::elb::{keys, TargetGroupRecord};
use protocol::pagination::TokenCodec;
use protocol::{query, xml, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use store::clock::Clock;
use store::{Compare, CompareOp, CompareTarget, Op, Store, Txn};
use tracing::{error, warn};

pub use error::Elbv2Error;
pub use routes::dispatch as dispatch_load_balancer_protocol;

use error::{invalid, Result};
use records::{Action, ListenerRecord, LoadBalancerRecord, RuleRecord};

use crate::acm::records::{certificate_id, certificate_key, CertificateRecord};

/// The ELBv2 API version and its XML namespace.
pub const API_VERSION: &str = "2015-12-01";
pub const XML_NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
/// The SigV4 signing name clients use.
pub const SIGNING_NAME: &str = "elasticloadbalancing";

/// The default pool load balancer addresses come from: a loopback range, so a local `wharf lb`
/// can bind any of them without configuration.
pub const DEFAULT_ADDRESS_POOL: &str = "127.128.0.0/9";

/// Compare-and-swap attempts before a write gives up with `PriorRequestNotComplete`.
const MAX_ATTEMPTS: usize = 16;

/// Store key of the address a load balancer holds.
pub fn address_key(address: &str) -> String {
    format!("{}address/{address}", keys::PREFIX)
}

/// Everything the ELBv2 handlers and the load-balancer protocol need.
pub struct Elbv2Context {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
    /// Where `ReportRequestMetrics` puts its datums (CloudWatch's metric store).
    pub metrics: Arc<MetricStore>,
    /// The pool load balancer addresses are allocated from: `(base, prefix length)`.
    address_pool: (u32, u8),
    tokens: TokenCodec,
}

impl Elbv2Context {
    /// `address_pool`: an IPv4 CIDR; `token_key` keys the `Marker`s of paginated answers.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<MetricStore>,
        region: &str,
        account_id: &str,
        address_pool: &str,
        token_key: &[u8],
    ) -> std::result::Result<Elbv2Context, String> {
        let address_pool = pool_cidr(address_pool).ok_or_else(|| {
            format!("the load balancer address pool '{address_pool}' is not an IPv4 CIDR block")
        })?;
        Ok(Elbv2Context {
            store,
            clock,
            region: region.to_string(),
            account_id: account_id.to_string(),
            metrics,
            address_pool,
            tokens: TokenCodec::new(token_key),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `arn:aws:elasticloadbalancing:<region>:<account>:<resource>`.
    pub fn arn(&self, resource: &str) -> String {
        format!(
            "arn:aws:elasticloadbalancing:{}:{}:{resource}",
            self.region, self.account_id
        )
    }

    /// One record and its mod revision.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        let Some(kv) = self.store.get(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&kv.value) {
            Ok(value) => Ok(Some((value, kv.mod_revision))),
            Err(e) => Err(Elbv2Error::Internal(format!(
                "record {key} does not decode: {e}"
            ))),
        }
    }

    /// Every record under `prefix`, in key order, with mod revisions; unreadable ones are
    /// skipped with a warning.
    async fn range_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(T, i64)>> {
        let response = self.store.range(prefix, Default::default()).await?;
        Ok(response
            .kvs
            .into_iter()
            .filter_map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(value) => Some((value, kv.mod_revision)),
                Err(e) => {
                    warn!(key = kv.key, error = %e, "unreadable elbv2 record ignored");
                    None
                }
            })
            .collect())
    }

    /// Run `ops` if every `(key, mod revision)` still holds (0: the key is absent); `false`
    /// when another writer got there first.
    async fn commit(&self, guards: &[(String, i64)], ops: Vec<Op>) -> Result<bool> {
        let response = self
            .store
            .txn(Txn {
                compares: guards.iter().map(|(k, r)| guard(k, *r)).collect(),
                success: ops,
                failure: vec![],
            })
            .await?;
        Ok(response.succeeded)
    }

    /// A `NextMarker` resuming listing `scope` after `position`.
    fn marker(&self, scope: &str, position: &str) -> String {
        self.tokens.encode(scope, position)
    }

    fn position(&self, scope: &str, marker: &str) -> Result<String> {
        self.tokens
            .decode(scope, marker)
            .map_err(|_| invalid("The marker is not valid")) // guessed
    }

    /// The load balancer an ARN names.
    async fn load_balancer(&self, arn: &str) -> Result<(LoadBalancerRecord, i64)> {
        let not_found =
            || Elbv2Error::LoadBalancerNotFound(format!("Load balancer '{arn}' not found"));
        let (name, _) = records::parse_load_balancer_arn(arn)
            .ok_or_else(|| invalid(format!("'{arn}' is not a valid load balancer ARN")))?;
        match self
            .get_json::<LoadBalancerRecord>(&keys::load_balancer(name))
            .await?
        {
            Some((record, revision)) if record.arn == arn => Ok((record, revision)),
            _ => Err(not_found()),
        }
    }

    /// The target group an ARN names.
    async fn target_group(&self, arn: &str) -> Result<(TargetGroupRecord, i64)> {
        let (name, _) = model::elb::parse_target_group_arn(arn)
            .filter(|_| arn.starts_with("arn:aws:elasticloadbalancing:"))
            .ok_or_else(|| invalid(format!("'{arn}' is not a valid target group ARN")))?;
        match self
            .get_json::<TargetGroupRecord>(&keys::target_group(name))
            .await?
        {
            Some((record, revision)) if record.arn == arn => Ok((record, revision)),
            _ => Err(Elbv2Error::TargetGroupNotFound(format!(
                "Target groups '{arn}' not found"
            ))),
        }
    }

    /// The listener an ARN names.
    /// The ACM certificate a listener names, with its revision.
    async fn certificate(&self, arn: &str) -> Result<(CertificateRecord, i64)> {
        let not_found =
            || Elbv2Error::CertificateNotFound(format!("Certificate '{arn}' not found"));
        let id = certificate_id(arn, &self.region, &self.account_id).ok_or_else(not_found)?;
        match self
            .get_json::<CertificateRecord>(&certificate_key(id))
            .await?
        {
            Some((record, revision)) if record.arn == arn => Ok((record, revision)),
            _ => Err(not_found()),
        }
    }

    async fn listener(&self, arn: &str) -> Result<(ListenerRecord, i64)> {
        let (_, lb, id) = records::parse_listener_arn(arn)
            .ok_or_else(|| invalid(format!("'{arn}' is not a valid listener ARN")))?;
        match self
            .get_json::<ListenerRecord>(&keys::listener(lb, id))
            .await?
        {
            Some((record, revision)) if record.arn == arn => Ok((record, revision)),
            _ => Err(Elbv2Error::ListenerNotFound(format!(
                "Listener '{arn}' not found"
            ))),
        }
    }
}

/// The address pool as `(base, prefix length)`: an IPv4 CIDR (as EC2 parses them) with room
/// for more than one address (/30 at most).
fn pool_cidr(text: &str) -> Option<(u32, u8)> {
    crate::ec2::common::Cidr::parse(text)
        .filter(|c| c.len <= 30)
        .map(|c| (c.base, c.len))
}

/// A compare that holds while `key` is at mod revision `revision` (0: absent).
fn guard(key: &str, revision: i64) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(revision),
        op: CompareOp::Equal,
    }
}

fn put_json<T: Serialize>(key: &str, value: &T) -> Op {
    Op::Put {
        key: key.to_string(),
        value: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        lease: None,
    }
}

fn delete_key(key: &str) -> Op {
    Op::Delete {
        key: key.to_string(),
    }
}

fn conflict() -> Elbv2Error {
    Elbv2Error::PriorRequestNotComplete(
        "The resource is being modified by another request; retry".into(), // guessed
    )
}

/// Parse a canonical input into its typed form. Missing required members are
/// `ValidationError`s, as botocore-free clients see them from AWS.
fn parse<T: DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("missing field `") {
            Some(rest) => {
                let field = rest.split('`').next().unwrap_or("");
                invalid(format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    lower_first(field)
                ))
            }
            None => Elbv2Error::MalformedInput(text),
        }
    })
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The guards (key, mod revision) and re-puts of `Topology::claim_groups`.
type Claim = (Vec<(String, i64)>, Vec<Op>);

/// Every listener and rule, for the questions that span resources: which load balancers use a
/// target group, whether a group may be deleted, what a load balancer's rules are.
struct Topology {
    listeners: Vec<(ListenerRecord, i64)>,
    rules: Vec<(RuleRecord, i64)>,
    /// Target group ARN → its stored record as read before the listeners and rules: a forward
    /// written later re-puts these exact bytes, compared on this mod revision.
    groups: BTreeMap<String, store::KeyValue>,
}

impl Topology {
    async fn load(ctx: &Elbv2Context) -> Result<Topology> {
        // Groups first: a listener or rule committed after this read re-puts its groups, so a
        // write guarded on these revisions fails unless the listeners read below include it.
        let response = ctx
            .store
            .range(keys::TARGET_GROUP_PREFIX, Default::default())
            .await?;
        let mut groups = BTreeMap::new();
        for kv in response.kvs {
            match serde_json::from_slice::<TargetGroupRecord>(&kv.value) {
                Ok(group) => {
                    groups.insert(group.arn, kv);
                }
                Err(e) => warn!(key = kv.key, error = %e, "unreadable elbv2 record ignored"),
            }
        }
        Ok(Topology {
            listeners: ctx.range_json(keys::LISTENER_PREFIX).await?,
            rules: ctx.range_json(keys::RULE_PREFIX).await?,
            groups,
        })
    }

    /// The guards and re-puts (same bytes, so the ECS scheduler's CAS sees no content change)
    /// that claim every group `actions` forward to for this write; `None` when a group was
    /// not there when the topology was read, so the caller must read it again.
    fn claim_groups(&self, actions: &[Action]) -> Option<Claim> {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        for arn in actions.iter().flat_map(Action::target_group_arns) {
            let kv = self.groups.get(arn)?;
            if guards.iter().any(|(k, _)| *k == kv.key) {
                continue;
            }
            guards.push((kv.key.clone(), kv.mod_revision));
            ops.push(Op::Put {
                key: kv.key.clone(),
                value: kv.value.clone(),
                lease: kv.lease,
            });
        }
        Some((guards, ops))
    }

    /// ARNs of the load balancers whose listeners or rules forward to `target_group_arn`.
    fn load_balancers_of(&self, target_group_arn: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (listener, _) in &self.listeners {
            let rules = self
                .rules
                .iter()
                .filter(|(r, _)| r.listener_id == listener.id)
                .flat_map(|(r, _)| r.actions.iter());
            let uses = listener
                .default_actions
                .iter()
                .chain(rules)
                .any(|a| a.target_group_arns().contains(&target_group_arn));
            if uses && !out.contains(&listener.load_balancer_arn) {
                out.push(listener.load_balancer_arn.clone());
            }
        }
        out
    }

    fn in_use(&self, target_group_arn: &str) -> bool {
        !self.load_balancers_of(target_group_arn).is_empty()
    }
}

/// (operation, input shape, output shape) of an operation Wharf serves.
fn operation(name: &str) -> Option<(&'static str, Option<&'static str>, Option<&'static str>)> {
    shapes::OPERATIONS
        .iter()
        .find(|(op, _, _)| *op == name)
        .map(|(op, input, output)| (*op, *input, *output))
}

/// Run one operation on its canonical input.
async fn dispatch(ctx: &Elbv2Context, operation: &str, input: Value) -> Result<Value> {
    match operation {
        "CreateLoadBalancer" => load_balancers::create(ctx, input).await,
        "DescribeLoadBalancers" => load_balancers::describe(ctx, input).await,
        "DeleteLoadBalancer" => load_balancers::delete(ctx, input).await,
        "DescribeLoadBalancerAttributes" => load_balancers::describe_attributes(ctx, input).await,
        "ModifyLoadBalancerAttributes" => load_balancers::modify_attributes(ctx, input).await,
        "CreateTargetGroup" => target_groups::create(ctx, input).await,
        "DescribeTargetGroups" => target_groups::describe(ctx, input).await,
        "ModifyTargetGroup" => target_groups::modify(ctx, input).await,
        "DeleteTargetGroup" => target_groups::delete(ctx, input).await,
        "DescribeTargetGroupAttributes" => target_groups::describe_attributes(ctx, input).await,
        "ModifyTargetGroupAttributes" => target_groups::modify_attributes(ctx, input).await,
        "RegisterTargets" => targets::register(ctx, input).await,
        "DeregisterTargets" => targets::deregister(ctx, input).await,
        "DescribeTargetHealth" => targets::describe_health(ctx, input).await,
        "CreateListener" => listeners::create(ctx, input).await,
        "DescribeListeners" => listeners::describe(ctx, input).await,
        "ModifyListener" => listeners::modify(ctx, input).await,
        "DeleteListener" => listeners::delete(ctx, input).await,
        "DescribeListenerAttributes" => listeners::describe_attributes(ctx, input).await,
        "AddListenerCertificates" => listeners::add_certificates(ctx, input).await,
        "RemoveListenerCertificates" => listeners::remove_certificates(ctx, input).await,
        "DescribeListenerCertificates" => listeners::describe_certificates(ctx, input).await,
        "DescribeSSLPolicies" => listeners::describe_ssl_policies(ctx, input).await,
        "ModifyListenerAttributes" => listeners::modify_attributes(ctx, input).await,
        "CreateRule" => rules::create(ctx, input).await,
        "DescribeRules" => rules::describe(ctx, input).await,
        "ModifyRule" => rules::modify(ctx, input).await,
        "DeleteRule" => rules::delete(ctx, input).await,
        "SetRulePriorities" => rules::set_priorities(ctx, input).await,
        "AddTags" => tags::add(ctx, input).await,
        "RemoveTags" => tags::remove(ctx, input).await,
        "DescribeTags" => tags::describe(ctx, input).await,
        other => Err(Elbv2Error::InvalidAction(format!(
            "Could not find operation {other} for version {API_VERSION}"
        ))),
    }
}

/// Decode a Query request: (operation, output shape, canonical input).
fn decode(request: &Request) -> Result<(&'static str, Option<&'static str>, Value)> {
    let form = if request.method == "GET" {
        request.query.as_bytes().to_vec()
    } else {
        request.body.to_vec()
    };
    let parsed = query::parse(&form);
    let Some(action) = parsed.action.as_deref() else {
        return Err(Elbv2Error::InvalidAction(
            "The request must contain the parameter Action".into(), // guessed
        ));
    };
    let Some((op, input, output)) = operation(action) else {
        return Err(Elbv2Error::InvalidAction(format!(
            "Could not find operation {action} for version {}",
            parsed.version.as_deref().unwrap_or(API_VERSION)
        )));
    };
    let value = match input {
        Some(shape) => query::to_canonical(&shapes::SHAPES, shape, &parsed.params)
            .map_err(|e| Elbv2Error::MalformedInput(e.0))?,
        None => Value::Object(Default::default()),
    };
    Ok((op, output, value))
}

/// Answer one authenticated `elasticloadbalancing` request.
pub async fn serve(ctx: &Arc<Elbv2Context>, request: &Request) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match decode(request) {
        Ok((op, shape, input)) => dispatch(ctx, op, input)
            .await
            .map(|output| (op, shape, output))
            .inspect_err(|e| {
                if matches!(e, Elbv2Error::Store(_) | Elbv2Error::Internal(_)) {
                    error!(operation = op, error = %e, "elbv2 operation failed");
                }
            }),
        Err(e) => Err(e),
    };
    let (status, body) = match result {
        Ok((op, shape, output)) => {
            let result = shape.map(|shape| (&shapes::SHAPES, shape, &output));
            (
                StatusCode::OK,
                xml::response(op, XML_NAMESPACE, result, &request_id),
            )
        }
        Err(e) => {
            let wire = e.to_wire();
            (
                StatusCode::from_u16(wire.error.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                xml::error_response(&wire.error, wire.query_code, XML_NAMESPACE, &request_id),
            )
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(xml::CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

/// One page of `items` (sorted by `position`) after `Marker`, at most `PageSize` (1–400,
/// AWS's bounds); the page and its `NextMarker`.
fn page<T>(
    ctx: &Elbv2Context,
    scope: &str,
    items: Vec<T>,
    position: impl Fn(&T) -> String,
    marker: Option<&str>,
    page_size: Option<i32>,
) -> Result<(Vec<T>, Option<String>)> {
    let size = match page_size {
        None => 400,
        Some(n) if (1..=400).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'pageSize' failed to satisfy constraint: Member must have value between 1 and 400"
            )))
        }
    };
    let after = marker.map(|m| ctx.position(scope, m)).transpose()?;
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| position(item) > *a))
        .collect();
    if rest.len() <= size {
        return Ok((rest, None));
    }
    rest.truncate(size);
    let next = rest.last().map(|last| ctx.marker(scope, &position(last)));
    Ok((rest, next))
}

/// Timestamps are epoch seconds in the canonical value.
fn timestamp(ms: i64) -> Value {
    protocol::shape::double_value(ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_as_masked_cidrs() {
        assert_eq!(
            pool_cidr("127.128.0.0/9"),
            Some((u32::from(std::net::Ipv4Addr::new(127, 128, 0, 0)), 9))
        );
        assert_eq!(pool_cidr("127.200.1.1/9").map(|p| p.0), Some(0x7f80_0000));
        assert_eq!(pool_cidr("nope"), None);
        assert_eq!(pool_cidr("10.0.0.0/31"), None);
    }

    #[test]
    fn missing_members_are_validation_errors() {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        #[allow(dead_code)]
        struct Input {
            load_balancer_arn: String,
        }
        let err = parse::<Input>(serde_json::json!({})).err().unwrap();
        assert!(matches!(err, Elbv2Error::Validation(_)));
        assert!(err.to_string().contains("'loadBalancerArn'"), "{err}");
    }
}
