//! Resource versions (RFC 7644 §3.14): weak ETags computed from a resource's content, and the
//! `If-Match` / `If-None-Match` preconditions evaluated against them.
//!
//! The sidecar keeps no state, so a version cannot be a counter: it is a hash of what the
//! resource says. `meta` is left out of the hash (so that `meta.version` can carry the tag and
//! a `lastModified` we cannot know precisely does not change it), and object keys are sorted
//! first, so the same content always yields the same tag whatever order it was built in.
//!
//! Tags are compared with the weak comparison of RFC 7232 §2.3.2 (the `W/` prefix is ignored)
//! for both headers: every tag we issue is weak, and SCIM clients echo `meta.version` into
//! `If-Match` (RFC 7644 §3.14), which strong comparison would always refuse.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// How many bytes of the SHA-256 digest the tag keeps (16 hex digits): ample to tell two
/// versions of one resource apart, short enough for headers and logs.
const TAG_BYTES: usize = 8;

/// `W/"<16 hex>"` over the canonical serialisation of `resource` without its top-level `meta`.
pub fn weak_etag(resource: &Value) -> String {
    let mut canonical = String::new();
    match resource {
        Value::Object(map) => {
            write_object(&mut canonical, map.iter().filter(|(key, _)| key.as_str() != "meta"))
        }
        other => write_canonical(&mut canonical, other),
    }
    let mut fingerprint = Fingerprint::new();
    fingerprint.part(canonical.as_str());
    fingerprint.tag()
}

/// A weak ETag built from the parts a rendered resource depends on, fed in a fixed order:
/// cheaper than serialising the resource, and the one tag format the crate issues
/// (`W/"<16 hex>"`). Parts are separated, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new() -> Fingerprint {
        Fingerprint(Sha256::new())
    }

    /// Adds one part (`None` is a part of its own, distinct from any string).
    pub fn part<'a>(&mut self, part: impl Into<Option<&'a str>>) -> &mut Fingerprint {
        match part.into() {
            Some(text) => {
                self.0.update([0x01]);
                self.0.update(text.as_bytes());
            }
            None => self.0.update([0x00]),
        }
        self.0.update([0xff]);
        self
    }

    /// `W/"<16 hex>"`.
    pub fn tag(&self) -> String {
        let digest = self.0.clone().finalize();
        format!("W/\"{}\"", hex::encode(&digest[..TAG_BYTES]))
    }
}

/// Whether a request carrying `If-Match: <if_match>` may proceed against a resource whose
/// current tag is `current`. `*` matches any existing resource; otherwise one listed tag must
/// match weakly. An empty header is taken as no precondition. Anything else that is not an
/// entity tag (a malformed header) matches nothing, so the request fails with 412 rather than
/// overwrite a version the client did not mean.
pub fn if_match_satisfied(if_match: &str, current: &str) -> bool {
    if if_match.trim().is_empty() {
        return true;
    }
    condition_matches(if_match, current)
}

/// Whether a GET carrying `If-None-Match: <if_none_match>` should be answered `304 Not
/// Modified`: `*`, or a listed tag that weakly matches `current`.
pub fn if_none_match_satisfied(if_none_match: &str, current: &str) -> bool {
    condition_matches(if_none_match, current)
}

/// `*` or a comma-separated list of entity tags, any of which weakly matches `current`.
fn condition_matches(header: &str, current: &str) -> bool {
    let current = opaque_tag(current);
    EntityTags::new(header).any(|tag| match tag {
        Tag::Any => true,
        Tag::Opaque(opaque) => opaque == current,
    })
}

/// The opaque part of one entity tag: `W/"abc"` → `abc`, `"abc"` → `abc`; a bare token (some
/// clients drop the quotes) is taken as it is.
fn opaque_tag(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").or_else(|| tag.strip_prefix("w/")).unwrap_or(tag);
    tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag)
}

#[derive(Debug, PartialEq, Eq)]
enum Tag<'a> {
    Any,
    Opaque(&'a str),
}

/// Iterator over the tags of an `If-Match` / `If-None-Match` value. A quoted tag may contain
/// commas (RFC 7232 `etagc` allows them), so the list is scanned rather than split.
struct EntityTags<'a> {
    rest: &'a str,
}

// === impl EntityTags ===

impl<'a> EntityTags<'a> {
    fn new(header: &'a str) -> Self {
        EntityTags { rest: header }
    }
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        loop {
            let rest = self.rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                self.rest = rest;
                return None;
            }
            let unprefixed = rest.strip_prefix("W/").or_else(|| rest.strip_prefix("w/")).unwrap_or(rest);
            if let Some(quoted) = unprefixed.strip_prefix('"') {
                return match quoted.find('"') {
                    Some(end) => {
                        self.rest = &quoted[end + 1..];
                        Some(Tag::Opaque(&quoted[..end]))
                    }
                    // An unterminated quote: nothing after it can be a tag.
                    None => {
                        self.rest = "";
                        None
                    }
                };
            }
            let end = unprefixed.find(',').unwrap_or(unprefixed.len());
            let token = unprefixed[..end].trim();
            self.rest = &unprefixed[end..];
            if token == "*" {
                return Some(Tag::Any);
            }
            if !token.is_empty() {
                return Some(Tag::Opaque(token));
            }
        }
    }
}

/// Compact JSON with object keys in byte order: the same content always serialises the same.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map.iter()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        // `Display` of a scalar `Value` is its compact JSON text, and cannot fail.
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_object<'v>(out: &mut String, entries: impl Iterator<Item = (&'v String, &'v Value)>) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        write_canonical(out, value);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn etag_is_weak_short_and_hex() {
        let tag = weak_etag(&json!({"id": "7", "userName": "kim@example.com"}));
        assert!(tag.starts_with("W/\"") && tag.ends_with('"'), "{tag}");
        let hex = &tag[3..tag.len() - 1];
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn etag_is_stable_under_key_order_at_every_depth() {
        let a: Value = serde_json::from_str(
            r#"{"id":"7","name":{"givenName":"Kim","familyName":"Lee"},"emails":[{"value":"k@x","primary":true}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"emails":[{"primary":true,"value":"k@x"}],"name":{"familyName":"Lee","givenName":"Kim"},"id":"7"}"#,
        )
        .unwrap();
        assert_eq!(weak_etag(&a), weak_etag(&b));
    }

    #[test]
    fn etag_ignores_meta_but_not_content() {
        let base = json!({"id": "7", "displayName": "Kim", "active": true});
        let with_meta = json!({
            "id": "7", "displayName": "Kim", "active": true,
            "meta": {"resourceType": "User", "lastModified": "2026-01-01T00:00:00Z", "version": "W/\"x\""}
        });
        assert_eq!(weak_etag(&base), weak_etag(&with_meta));
        for changed in [
            json!({"id": "7", "displayName": "Kim L", "active": true}),
            json!({"id": "7", "displayName": "Kim", "active": false}),
            json!({"id": "7", "displayName": "Kim", "active": true, "role": "member"}),
            json!({"id": "7", "displayName": "Kim", "active": true, "meta2": {}}),
            // Nested `meta` keys are content: only the top-level one is left out.
            json!({"id": "7", "displayName": "Kim", "active": true, "x": {"meta": 1}}),
        ] {
            assert_ne!(weak_etag(&base), weak_etag(&changed), "{changed}");
        }
        // Array order is content.
        assert_ne!(
            weak_etag(&json!({"members": [{"value": "1"}, {"value": "2"}]})),
            weak_etag(&json!({"members": [{"value": "2"}, {"value": "1"}]}))
        );
    }

    #[test]
    fn canonical_form_is_compact_sorted_json() {
        let mut out = String::new();
        write_canonical(&mut out, &json!({"b": [1, "two", null, false], "a": {"d": 1.5, "c": "q\"uote"}}));
        assert_eq!(out, r#"{"a":{"c":"q\"uote","d":1.5},"b":[1,"two",null,false]}"#);
    }

    #[test]
    fn if_match_table() {
        let current = r#"W/"0123456789abcdef""#;
        let cases: &[(&str, bool)] = &[
            ("*", true),
            (" * ", true),
            (r#"W/"0123456789abcdef""#, true),
            // Weak comparison: a strong tag with the same opaque value matches.
            (r#""0123456789abcdef""#, true),
            (r#"w/"0123456789abcdef""#, true),
            (r#"W/"aaaa", W/"0123456789abcdef""#, true),
            (r#"W/"aaaa",W/"0123456789abcdef",W/"bbbb""#, true),
            // A quoted tag may contain a comma.
            (r#"W/"a,b", "0123456789abcdef""#, true),
            ("0123456789abcdef", true),
            (r#"W/"aaaa""#, false),
            (r#"W/"aaaa", "bbbb""#, false),
            (r#"W/"0123456789ABCDEF""#, false),
            (r#"W/"0123456789abcdef"#, false),
            ("garbage", false),
            ("", true),
            ("  ", true),
        ];
        for (header, expected) in cases {
            assert_eq!(if_match_satisfied(header, current), *expected, "If-Match: {header}");
        }
    }

    #[test]
    fn if_none_match_table() {
        let current = r#"W/"0123456789abcdef""#;
        let cases: &[(&str, bool)] = &[
            ("*", true),
            (r#"W/"0123456789abcdef""#, true),
            (r#""0123456789abcdef""#, true),
            (r#"W/"aaaa", W/"0123456789abcdef""#, true),
            (r#"W/"aaaa""#, false),
            ("", false),
            (",, ,", false),
        ];
        for (header, expected) in cases {
            assert_eq!(if_none_match_satisfied(header, current), *expected, "If-None-Match: {header}");
        }
    }

    #[test]
    fn issued_tags_satisfy_their_own_preconditions() {
        let resource = json!({"id": "9", "displayName": "eng"});
        let tag = weak_etag(&resource);
        assert!(if_match_satisfied(&tag, &tag));
        assert!(if_none_match_satisfied(&tag, &tag));
        let other = weak_etag(&json!({"id": "9", "displayName": "ops"}));
        assert!(!if_match_satisfied(&other, &tag));
        assert!(!if_none_match_satisfied(&other, &tag));
    }

    #[test]
    fn tag_scanner_yields_each_tag() {
        let tags: Vec<Tag> = EntityTags::new(r#" W/"a" ,"b,c",  d , * "#).collect();
        assert_eq!(tags, [Tag::Opaque("a"), Tag::Opaque("b,c"), Tag::Opaque("d"), Tag::Any]);
    }
}
