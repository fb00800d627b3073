//! Pagination as ECS does it: `maxResults` bounds a page, `nextToken` is opaque and bound to
//! the operation and its filters, so a token cannot be replayed against another listing.

use protocol::pagination::TokenCodec;
use serde::Serialize;
use serde_json::{json, Value};

use super::EcsError;

/// One page of `items` (already sorted by their key), resuming after the key in `next_token`.
/// `scope` names the listing (operation + filters). Keys must be unique and sorted.
pub fn page<T>(
    tokens: &TokenCodec,
    scope: &str,
    items: Vec<(String, T)>,
    next_token: Option<&str>,
    max_results: Option<i64>,
    max_allowed: i64,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let limit = match max_results {
        None => max_allowed as usize,
        Some(n) if (1..=max_allowed).contains(&n) => n as usize,
        Some(_) => {
            return Err(EcsError::InvalidParameter(format!(
                "maxResults must be between 1 and {max_allowed}."
            )))
        }
    };
    let after = match next_token.filter(|t| !t.is_empty()) {
        Some(token) => Some(
            tokens
                .decode(scope, token)
                .map_err(|_| EcsError::InvalidParameter("Invalid nextToken.".to_string()))?,
        ),
        None => None,
    };
    let mut rest: Vec<(String, T)> = match &after {
        Some(after) => items
            .into_iter()
            .filter(|(key, _)| key.as_str() > after.as_str())
            .collect(),
        None => items,
    };
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more {
        rest.last().map(|(key, _)| tokens.encode(scope, key))
    } else {
        None
    };
    Ok((rest.into_iter().map(|(_, item)| item).collect(), next))
}

/// A list operation's answer: `{"<field>": [...], "nextToken": "..."}` (no token on the last page).
pub fn output<T: Serialize>(field: &str, items: Vec<T>, next: Option<String>) -> Value {
    let mut output = json!({ field: items });
    if let Some(next) = next {
        output["nextToken"] = json!(next);
    }
    output
}
