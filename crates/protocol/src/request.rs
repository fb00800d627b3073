//! A protocol-neutral view of one HTTP request, as the server received it.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct Request {
    /// Upper-case HTTP method, e.g. `POST`.
    pub method: String,
    /// The raw (still percent-encoded) path, e.g. `/`.
    pub path: String,
    /// The raw query string without the leading `?` (empty if none).
    pub query: String,
    /// Headers with lower-cased names, in the order received; repeated names appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
