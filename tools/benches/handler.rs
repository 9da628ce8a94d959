//! The sidecar's request handler without the network: `App::handle` on a warm 10,000-user
//! snapshot, next to `/livez` through the same function. This isolates the server's own CPU
//! per request from the load generator and the kernel (which share the 2 cores in
//! `scim-load bench`). Run: `cargo bench --bench handler`.
// Benchmark setup, like tests, may panic on a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Empty;
use hyper::Request;

use fake_zulip::{FakeUser, FakeZulip};
use scim_sidecar::app::App;
use scim_sidecar::demo::{demo_config, DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};

const TOKEN: &str = "bench-token-0123456789abcdef";
/// Users in the realm (`SCIM_BENCH_USERS`, default 10,000): the per-request work of every case
/// is the same at any size, so a difference between sizes is the cost of the snapshot's size
/// (cache misses, a heap fragmented by the snapshot load).
fn users() -> u64 {
    std::env::var("SCIM_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn request(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .unwrap()
}

fn encoded(filter: &str) -> String {
    url::form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

fn handler(c: &mut Criterion) {
    let n = users();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (app, _fake): (Arc<App>, FakeZulip) = rt.block_on(async {
        let mut b = FakeZulip::builder()
            .service_account(DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY)
            .with_system_groups();
        for i in 0..n {
            b = b.with_user(FakeUser::new(
                &format!("person{i}@zulip.example.com"),
                &format!("Person{i} Surname{i}"),
            ));
        }
        let fake = b.start().await.unwrap();
        let config = demo_config("127.0.0.1:1".parse().unwrap(), fake.base_url(), TOKEN).unwrap();
        let app = App::from_config(&config).unwrap();
        for realm in app.realms() {
            realm.check_ready().await.unwrap();
        }
        let warm = app.handle(request("/scim/v2/Users?count=1")).await;
        assert_eq!(warm.status(), 200);
        (app, fake)
    });
    let id = rt.block_on(async {
        _fake.user_by_email(&format!("person{}@zulip.example.com", n / 2)).unwrap().user_id
    });
    let filter = format!(
        "/scim/v2/Users?filter={}",
        encoded(&format!("userName eq \"person{}@zulip.example.com\"", n / 2))
    );
    let cases = [
        ("livez", "/livez".to_string()),
        ("get_user", format!("/scim/v2/Users/{id}")),
        ("filter_username_eq", filter),
        ("page_100_middle", format!("/scim/v2/Users?startIndex={}&count=100", (n / 2).max(1))),
    ];
    let mut g = c.benchmark_group(format!("handle_{n}_users"));
    for (name, path) in cases {
        let first = rt.block_on(app.handle(request(&path)));
        assert_eq!(first.status(), 200, "{path}");
        g.bench_function(name, |b| b.iter(|| rt.block_on(app.handle(black_box(request(&path))))));
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = handler }
criterion_main!(benches);
