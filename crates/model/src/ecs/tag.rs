//! Resource tags and AWS's tag rules (at most 50 per resource, key 1–128 and value 0–256
//! characters, the `aws:` prefix reserved).

use crate::validation::Problem;

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub key: Option<String>,
    pub value: Option<String>,
}

pub const MAX_TAGS_PER_RESOURCE: usize = 50;

/// Check tags as ECS does before storing them.
pub fn validate_tags(tags: &[Tag]) -> Result<(), Problem> {
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(Problem::invalid_parameter(
                "Tag keys must be between 1 and 128 characters in length.",
            ));
        }
        if tag.value.as_deref().unwrap_or("").chars().count() > 256 {
            return Err(Problem::invalid_parameter(
                "Tag values must be between 0 and 256 characters in length.",
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Problem::invalid_parameter(
                "Tag keys cannot begin with the reserved prefix 'aws:'.",
            ));
        }
    }
    Ok(())
}

/// Merge `new` into `existing` (same key replaces), keeping first-seen order, and check the
/// per-resource limit on the result.
pub fn merge_tags(existing: &[Tag], new: &[Tag]) -> Result<Vec<Tag>, Problem> {
    validate_tags(new)?;
    let mut merged: Vec<Tag> = existing.to_vec();
    for tag in new {
        match merged.iter_mut().find(|t| t.key == tag.key) {
            Some(slot) => slot.value = tag.value.clone(),
            None => merged.push(tag.clone()),
        }
    }
    if merged.len() > MAX_TAGS_PER_RESOURCE {
        return Err(Problem::invalid_parameter(format!(
            "The resource can have at most {MAX_TAGS_PER_RESOURCE} tags."
        )));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn merge_replaces_by_key_and_enforces_limits() {
        let merged = merge_tags(&[tag("a", "1")], &[tag("a", "2"), tag("b", "3")]).unwrap();
        assert_eq!(merged, vec![tag("a", "2"), tag("b", "3")]);
        assert!(merge_tags(&[], &[tag("aws:x", "1")]).is_err());
        assert!(merge_tags(&[], &[tag("", "1")]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(merge_tags(&[], &many).is_err());
    }
}
