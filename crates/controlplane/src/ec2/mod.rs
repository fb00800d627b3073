//! EC2 (`ec2`, the EC2 Query protocol): the VPCs, subnets, security groups and network
//! interfaces ECS's awsvpc networking uses (see `model::ec2` for the records and their keys).
//!
//! Skeleton: the context and the entry point the server calls.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use protocol::Request;
use store::clock::Clock;
use store::Store;

/// Everything EC2's handlers need.
pub struct Ec2Context {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
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
        }
    }
}

/// Answer one authenticated `ec2` request.
pub async fn serve(_ctx: &Arc<Ec2Context>, _request: &Request) -> Response<Body> {
    let mut response = Response::new(Body::from(""));
    *response.status_mut() = axum::http::StatusCode::NOT_IMPLEMENTED;
    response
}

/// Create the default VPC, its subnets and default security group if they do not exist yet
/// (idempotent; called at every start).
pub async fn ensure_defaults(_ctx: &Ec2Context) -> Result<(), store::StoreError> {
    Ok(())
}
