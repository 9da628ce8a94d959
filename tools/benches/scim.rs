//! Micro-benchmarks of the pure SCIM layer: filter parse and evaluation, PATCH parse + apply,
//! user rendering, and serialising a 100-user ListResponse (what `GET /Users?count=100` pays
//! per request besides the network). Run: `cargo bench --bench scim -- --measurement-time 3`.
// Benchmark setup, like tests, may panic on a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

use scim::filter::Filter;
use scim::patch::PatchRequest;
use scim::projection::Projection;
use scim::schema::{GROUP, USER};
use scim::{version, GROUP_SCHEMA, LIST_RESPONSE_SCHEMA, PATCH_OP_SCHEMA};
use scim_sidecar::provision::mapping::UserMapping;
use zulip_client::{Role, User};

/// Okta's `GET /Users?filter=userName eq "…"` before every create.
const FILTER_SIMPLE: &str = r#"userName eq "hamlet@zulip.example.com""#;
/// Entra-style conjunction (matching on userName and a second attribute).
const FILTER_AND: &str = r#"userName eq "hamlet@zulip.example.com" and active eq true"#;
/// A value-path filter with `or`, `not`, `sw` and a date comparison.
const FILTER_COMPLEX: &str = r#"emails[type eq "work" and value co "@zulip.example.com"] and (name.familyName sw "Ham" or not (role eq "guest")) and meta.created gt "2020-01-01T00:00:00Z""#;

fn user(id: u64) -> User {
    User {
        user_id: id,
        email: format!("user{id}@zulip.example.com"),
        delivery_email: Some(format!("person{id}@zulip.example.com")),
        full_name: format!("Person{id} Hamlet"),
        date_joined: "2025-03-04T10:15+00:00".into(),
        is_active: true,
        role: Role::Member,
        is_bot: false,
        profile_data: Default::default(),
    }
}

fn mapping() -> UserMapping {
    UserMapping {
        base_url: "https://acme.zulip.example.com/scim/v2".into(),
        name_formatted_included: false,
        stores_external_id: false,
        ignore_unmapped: false,
        mapped: Vec::new(),
    }
}

/// A user as `GET /Users/{id}` renders it (with `meta.version`).
fn rendered(m: &UserMapping, u: &User) -> Value {
    let mut v = m.render(u, None, None, &[]);
    let etag = version::weak_etag(&v);
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.insert("version".into(), Value::from(etag));
    }
    v
}

fn filters(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter");
    for (name, src) in [("simple", FILTER_SIMPLE), ("entra_and", FILTER_AND), ("complex", FILTER_COMPLEX)] {
        g.bench_function(format!("parse/{name}"), |b| b.iter(|| Filter::parse(black_box(src)).unwrap()));
    }
    let m = mapping();
    let mut hamlet = user(12);
    hamlet.delivery_email = Some("hamlet@zulip.example.com".into());
    hamlet.full_name = "King Hamlet".into();
    let resource = rendered(&m, &hamlet);
    for (name, src) in [("simple", FILTER_SIMPLE), ("entra_and", FILTER_AND), ("complex", FILTER_COMPLEX)] {
        let f = Filter::parse(src).unwrap();
        f.validate(&USER).unwrap();
        assert!(f.matches(&resource, &USER), "{name} must match the fixture");
        g.bench_function(format!("eval/{name}"), |b| b.iter(|| f.matches(black_box(&resource), &USER)));
    }
    g.finish();
}

fn okta_deactivate() -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "value": {"active": false}}]})
}

fn entra_multi() -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Prince Hamlet"},
        {"op": "Replace", "path": "name.givenName", "value": "Prince"},
        {"op": "Replace", "path": "name.familyName", "value": "Hamlet"},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "prince@zulip.example.com"},
        {"op": "Replace", "path": "active", "value": "False"}
    ]})
}

fn group_add_100() -> Value {
    let members: Vec<Value> = (1000..1100).map(|id| json!({"value": id.to_string()})).collect();
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": "members", "value": members}]})
}

fn group_resource() -> Value {
    let members: Vec<Value> = (10..60)
        .map(|id| json!({"value": id.to_string(), "$ref": format!("https://acme.zulip.example.com/scim/v2/Users/{id}"), "display": format!("Person{id} Hamlet")}))
        .collect();
    json!({"schemas": [GROUP_SCHEMA], "id": "31", "displayName": "Engineering", "members": members,
        "meta": {"resourceType": "Group", "location": "https://acme.zulip.example.com/scim/v2/Groups/31"}})
}

fn patches(c: &mut Criterion) {
    let mut g = c.benchmark_group("patch");
    let m = mapping();
    let user_resource = rendered(&m, &user(12));
    let group = group_resource();
    let cases = [
        ("okta_deactivate", okta_deactivate(), &user_resource, &USER),
        ("entra_multi", entra_multi(), &user_resource, &USER),
        ("group_add_100", group_add_100(), &group, &GROUP),
    ];
    for (name, body, resource, rt) in cases {
        // Sanity: the patch applies.
        let mut check = resource.clone();
        PatchRequest::parse(&body).unwrap().apply(&mut check, rt).unwrap();
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| PatchRequest::parse(black_box(&body)).unwrap())
        });
        // parse + apply, as `patch_user` does (the resource clone is part of the real path:
        // `after = before.clone()`).
        g.bench_function(format!("parse_apply/{name}"), |b| {
            b.iter_batched(
                || resource.clone(),
                |mut r| {
                    PatchRequest::parse(&body).unwrap().apply(&mut r, rt).unwrap();
                    r
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    let m = mapping();
    let u = user(12);
    g.bench_function("user", |b| b.iter(|| m.render(black_box(&u), None, None, &[])));
    g.bench_function("user_with_etag", |b| b.iter(|| rendered(&m, black_box(&u))));
    let one = rendered(&m, &u);
    g.bench_function("user_to_string", |b| b.iter(|| black_box(&one).to_string()));

    // `GET /Users?count=100`: render 100 users, project (identity), wrap, serialise.
    let users: Vec<User> = (100..200).map(user).collect();
    let projection = Projection::parse(None, None).unwrap();
    let page: Vec<Value> = users.iter().map(|u| rendered(&m, u)).collect();
    let list = |resources: Vec<Value>| {
        json!({"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": 100_000, "itemsPerPage": resources.len(),
            "startIndex": 1, "Resources": resources})
        .to_string()
    };
    g.bench_function("list100_serialise", |b| {
        b.iter(|| list(page.iter().map(|r| projection.apply(r, &USER)).collect()))
    });
    g.bench_function("list100_render_and_serialise", |b| {
        b.iter(|| list(users.iter().map(|u| projection.apply(&rendered(&m, u), &USER)).collect()))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = filters, patches, render }
criterion_main!(benches);
