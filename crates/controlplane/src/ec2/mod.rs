//! EC2 (`ec2`, the EC2 Query protocol): the VPCs, subnets, security groups and network
//! interfaces ECS's awsvpc networking uses (see `model::ec2` for the records and their keys).
//!
//! A request is a form body decoded with the shapes generated from the model (`shapes`,
//! `protocol::ec2query`) into the canonical value, handled once per operation, and answered
//! as EC2's XML. Errors are one enum (`error::Ec2Error`) mapped to EC2's codes in one place.
//!
//! Every write is one compare-and-swap transaction on the revisions it read; a VPC's record is
//! also the guard of its subnets and security groups (creating either re-puts the VPC), so a
//! VPC is never deleted under a new subnet, and two subnets created together never overlap.
//! ENIs are written by the ECS task launcher (`ecs::awsvpc`); here they are only described,
//! tagged, and counted as dependencies.

pub(crate) mod common;
mod defaults;
mod error;
mod network_interfaces;
mod security_groups;
mod shapes;
mod subnets;
mod tags;
mod vpcs;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use bytes::Bytes;
use protocol::pagination::TokenCodec;
use protocol::{ec2query, query, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use store::clock::Clock;
use store::{Compare, CompareOp, CompareTarget, Op, Store, Txn};
use tracing::{debug, error, warn};

pub use defaults::ensure_defaults;
pub use error::Ec2Error;

use error::Result;

/// The EC2 API version and its XML namespace.
pub const API_VERSION: &str = "2016-11-15";
pub const XML_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

const TOKEN_KEY: &str = "ec2/token-key";
/// Compare-and-swap attempts before a write gives up with `RequestLimitExceeded`.
const MAX_ATTEMPTS: usize = 8;

/// Everything EC2's handlers need.
pub struct Ec2Context {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
    /// Pagination tokens, keyed by a random key kept in the store (so tokens survive restarts
    /// and work across replicas); loaded on first use.
    tokens: tokio::sync::OnceCell<TokenCodec>,
}

impl Ec2Context {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
    ) -> Ec2Context {
        Ec2Context {
            store,
            clock,
            region: region.to_string(),
            account_id: account_id.to_string(),
            tokens: tokio::sync::OnceCell::new(),
        }
    }

    /// `arn:aws:ec2:<region>:<account>:<kind>/<id>`.
    pub fn arn(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{}:{kind}/{id}",
            self.region, self.account_id
        )
    }

    /// One record and its mod revision (0 when absent, which is what a create compares).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, i64)>> {
        let Some(kv) = self.store.get(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&kv.value) {
            Ok(value) => Ok(Some((value, kv.mod_revision))),
            Err(e) => {
                warn!(key, error = %e, "unreadable ec2 record ignored");
                Ok(None)
            }
        }
    }

    /// Every record under `prefix`, in key (so id) order, with mod revisions.
    pub(crate) async fn range_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, i64)>> {
        let response = self.store.range(prefix, Default::default()).await?;
        Ok(response
            .kvs
            .into_iter()
            .filter_map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(value) => Some((value, kv.mod_revision)),
                Err(e) => {
                    warn!(key = kv.key, error = %e, "unreadable ec2 record ignored");
                    None
                }
            })
            .collect())
    }

    /// Run `ops` if every `(key, mod revision)` still holds; `false` when another writer got
    /// there first (the caller re-reads and retries).
    pub(crate) async fn commit(&self, guards: &[(String, i64)], ops: Vec<Op>) -> Result<bool> {
        let response = self
            .store
            .txn(Txn {
                compares: guards.iter().map(|(k, r)| guard(k, *r)).collect(),
                success: ops,
                failure: vec![],
            })
            .await?;
        if !response.succeeded {
            debug!("ec2 write lost a compare-and-swap race; retrying");
        }
        Ok(response.succeeded)
    }

    async fn token_codec(&self) -> Result<&TokenCodec> {
        self.tokens
            .get_or_try_init(|| async {
                use rand::RngCore as _;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                // Create the key if absent; whoever wins, everyone reads the stored one.
                let response = self
                    .store
                    .txn(Txn {
                        compares: vec![guard(TOKEN_KEY, 0)],
                        success: vec![Op::Put {
                            key: TOKEN_KEY.to_string(),
                            value: Bytes::copy_from_slice(&key),
                            lease: None,
                        }],
                        failure: vec![Op::Get {
                            key: TOKEN_KEY.to_string(),
                        }],
                    })
                    .await?;
                let stored = match response.responses.first() {
                    Some(store::OpResponse::Get { kv: Some(kv) }) => kv.value.to_vec(),
                    _ => key.to_vec(),
                };
                Ok::<_, Ec2Error>(TokenCodec::new(&stored))
            })
            .await
    }

    /// One page of `items` (sorted by their position strings), resuming after the position in
    /// `next_token`, and the token for the next page. `scope` binds tokens to the listing.
    pub(crate) async fn paginate<T>(
        &self,
        scope: &str,
        items: Vec<(String, T)>,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<T>, Option<String>)> {
        if let Some(max) = max_results {
            if !(5..=1000).contains(&max) {
                return Err(error::invalid(format!(
                    "Value ( {max} ) for parameter maxResults is invalid. Parameter must be between 5 and 1000." // guessed
                )));
            }
        }
        let after = match next_token.filter(|t| !t.is_empty()) {
            Some(token) => Some(
                self.token_codec()
                    .await?
                    .decode(scope, token)
                    .map_err(|_| Ec2Error::InvalidNextToken("Invalid pagination token".into()))?, // guessed
            ),
            None => None,
        };
        let mut rest: Vec<(String, T)> = items
            .into_iter()
            .filter(|(position, _)| after.as_ref().is_none_or(|a| position > a))
            .collect();
        let limit = max_results.map(|m| m as usize).unwrap_or(usize::MAX);
        if rest.len() <= limit {
            return Ok((rest.into_iter().map(|(_, v)| v).collect(), None));
        }
        rest.truncate(limit);
        let last = rest.last().map(|(p, _)| p.clone()).unwrap_or_default();
        let token = self.token_codec().await?.encode(scope, &last);
        Ok((rest.into_iter().map(|(_, v)| v).collect(), Some(token)))
    }
}

/// Compare a key's mod revision (0: the key must be absent).
pub(crate) fn guard(key: &str, mod_revision: i64) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(mod_revision),
        op: CompareOp::Equal,
    }
}

pub(crate) fn put_json<T: Serialize>(key: &str, value: &T) -> Op {
    Op::Put {
        key: key.to_string(),
        value: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        lease: None,
    }
}

pub(crate) fn delete(key: &str) -> Op {
    Op::Delete {
        key: key.to_string(),
    }
}

/// Deserialise an operation's canonical input into its typed form.
pub(crate) fn input<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| error::invalid(e.to_string()))
}

/// (input shape, output shape) of an operation Wharf serves.
fn operation(name: &str) -> Option<(&'static str, Option<&'static str>, Option<&'static str>)> {
    shapes::OPERATIONS
        .iter()
        .find(|(op, _, _)| *op == name)
        .map(|(op, input, output)| (*op, *input, *output))
}

/// Decode the request: (operation, output shape, canonical input).
fn decode(request: &Request) -> Result<(&'static str, Option<&'static str>, Value)> {
    // The SDKs POST a form body; a GET (or an empty POST) carries it in the query string.
    let form: &[u8] = if request.method == "GET" || request.body.is_empty() {
        request.query.as_bytes()
    } else {
        &request.body
    };
    let parsed = query::parse(form);
    let Some(action) = parsed.action.as_deref() else {
        return Err(Ec2Error::MissingParameter(
            "The request must contain the parameter Action".into(), // guessed
        ));
    };
    let Some((op, input_shape, output)) = operation(action) else {
        return Err(Ec2Error::InvalidAction(action.to_string()));
    };
    let value = match input_shape {
        Some(shape) => ec2query::to_canonical(&shapes::SHAPES, shape, &parsed.params)
            .map_err(|e| error::invalid(e.0))?,
        None => Value::Object(Default::default()),
    };
    if value.get("DryRun") == Some(&Value::Bool(true)) {
        return Err(Ec2Error::DryRunOperation);
    }
    Ok((op, output, value))
}

/// Run one operation on its canonical input; `None` for operations without output.
async fn dispatch(ctx: &Ec2Context, operation: &str, input: Value) -> Result<Option<Value>> {
    let output = match operation {
        "DescribeVpcs" => vpcs::describe_vpcs(ctx, input).await?,
        "CreateVpc" => vpcs::create_vpc(ctx, input).await?,
        "DeleteVpc" => {
            vpcs::delete_vpc(ctx, input).await?;
            return Ok(None);
        }
        "DescribeVpcAttribute" => vpcs::describe_vpc_attribute(ctx, input).await?,
        "ModifyVpcAttribute" => {
            vpcs::modify_vpc_attribute(ctx, input).await?;
            return Ok(None);
        }
        "DescribeAvailabilityZones" => vpcs::describe_availability_zones(ctx, input)?,
        "DescribeSubnets" => subnets::describe_subnets(ctx, input).await?,
        "CreateSubnet" => subnets::create_subnet(ctx, input).await?,
        "DeleteSubnet" => {
            subnets::delete_subnet(ctx, input).await?;
            return Ok(None);
        }
        "DescribeSecurityGroups" => security_groups::describe_security_groups(ctx, input).await?,
        "CreateSecurityGroup" => security_groups::create_security_group(ctx, input).await?,
        "DeleteSecurityGroup" => security_groups::delete_security_group(ctx, input).await?,
        "AuthorizeSecurityGroupIngress" => security_groups::authorize(ctx, input, false).await?,
        "AuthorizeSecurityGroupEgress" => security_groups::authorize(ctx, input, true).await?,
        "RevokeSecurityGroupIngress" => security_groups::revoke(ctx, input, false).await?,
        "RevokeSecurityGroupEgress" => security_groups::revoke(ctx, input, true).await?,
        "DescribeSecurityGroupRules" => security_groups::describe_rules(ctx, input).await?,
        "DescribeNetworkInterfaces" => {
            network_interfaces::describe_network_interfaces(ctx, input).await?
        }
        "CreateTags" => {
            tags::create_tags(ctx, input).await?;
            return Ok(None);
        }
        "DeleteTags" => {
            tags::delete_tags(ctx, input).await?;
            return Ok(None);
        }
        "DescribeTags" => tags::describe_tags(ctx, input).await?,
        other => return Err(Ec2Error::InvalidAction(other.to_string())),
    };
    Ok(Some(output))
}

/// Answer one authenticated `ec2` request.
pub async fn serve(ctx: &Arc<Ec2Context>, request: &Request) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match decode(request) {
        Ok((op, output_shape, input)) => dispatch(ctx, op, input)
            .await
            .map(|output| (op, output_shape, output))
            .inspect_err(|e| {
                if matches!(e, Ec2Error::Store(_)) {
                    error!(operation = op, error = %e, "ec2 operation failed");
                } else {
                    debug!(operation = op, error = %e, "ec2 operation refused");
                }
            }),
        Err(e) => Err(e),
    };
    let (status, body) = match result {
        Ok((op, shape, output)) => {
            let result = match (shape, &output) {
                (Some(shape), Some(value)) => Some((&shapes::SHAPES, shape, value)),
                _ => None,
            };
            (
                StatusCode::OK,
                ec2query::response(op, XML_NAMESPACE, result, &request_id),
            )
        }
        Err(e) => {
            let (status, code) = e.code();
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                ec2query::error_response(code, &e.message(), &request_id),
            )
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(ec2query::CONTENT_TYPE),
    );
    // The server keeps a request id a service set, so header and body agree.
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    response
}
