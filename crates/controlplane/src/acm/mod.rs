//! AWS Certificate Manager (`acm`): the certificates HTTPS and TLS listeners serve.

pub mod records;
