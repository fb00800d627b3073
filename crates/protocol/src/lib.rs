//! AWS wire protocols, as pure functions over bytes: SigV4 request verification, the JSON
//! 1.0/1.1 envelope (`X-Amz-Target` dispatch, `__type` errors), and tamper-checked pagination
//! tokens; the Query protocol (`query`) with its XML responses (`xml`), and RPC v2 CBOR (`cbor`),
//! which decode into and encode from one canonical value driven by the service's shapes
//! (`shape`). REST-JSON plugs in beside them.
//!
//! No I/O and no clock: the caller passes the current time in.

pub mod cbor;
pub mod ec2query;
pub mod error;
pub mod json;
pub mod pagination;
pub mod query;
pub mod request;
pub mod shape;
pub mod sigv4;
pub mod xml;

pub use error::{AwsError, Fault};
pub use request::Request;
