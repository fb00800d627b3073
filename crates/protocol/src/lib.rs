//! AWS wire protocols, as pure functions over bytes: SigV4 request verification, the JSON
//! 1.0/1.1 envelope (`X-Amz-Target` dispatch, `__type` errors), and tamper-checked pagination
//! tokens. Query/XML, RPC v2 CBOR and REST-JSON plug in beside `json` as sibling modules.
//!
//! No I/O and no clock: the caller passes the current time in.

pub mod error;
pub mod json;
pub mod pagination;
pub mod request;
pub mod sigv4;

pub use error::{AwsError, Fault};
pub use request::Request;
