//! Hot-path benchmarks: route matching over 1,000 routes, path normalisation, and the
//! X-Forwarded-For decision.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgegate::forwarded::forwarded;
use edgegate::routing::{normalize, parse_route_key, Router};

fn thousand_routes() -> Router {
    let methods = ["GET", "POST", "PUT", "DELETE", "ANY"];
    let keys: Vec<_> = (0..1000)
        .map(|i| {
            let m = methods[i % methods.len()];
            let k = match i % 4 {
                0 => format!("{m} /svc{i}/items"),
                1 => format!("{m} /svc{i}/items/{{id}}"),
                2 => format!("{m} /svc{i}/items/{{id}}/parts/{{part}}"),
                _ => format!("{m} /svc{i}/files/{{path+}}"),
            };
            parse_route_key(&k).expect("route key")
        })
        .collect();
    Router::build(keys.iter().enumerate()).expect("router")
}

fn bench(c: &mut Criterion) {
    let r = thousand_routes();
    let get = http::Method::GET;
    c.bench_function("route match: 1000 routes, static", |b| {
        b.iter(|| black_box(r.find(&get, black_box("/svc500/items"))))
    });
    c.bench_function("route match: 1000 routes, 2 params", |b| {
        b.iter(|| black_box(r.find(&get, black_box("/svc502/items/42/parts/7"))))
    });
    c.bench_function("route match: 1000 routes, greedy", |b| {
        b.iter(|| black_box(r.find(&http::Method::PATCH, black_box("/svc999/files/a/b/c.txt"))))
    });
    c.bench_function("route match: 1000 routes, miss", |b| b.iter(|| black_box(r.find(&get, black_box("/nope/x")))));
    c.bench_function("normalize: clean path", |b| b.iter(|| black_box(normalize(black_box("/prod/v1/pets/7/toys")))));
    c.bench_function("normalize: dirty path", |b| {
        b.iter(|| black_box(normalize(black_box("/prod//v1/./pets/%37/../8/toys"))))
    });
    let trusted = vec!["10.0.0.0/8".parse().expect("net")];
    let peer = "10.1.2.3".parse().expect("ip");
    c.bench_function("x-forwarded-for: trusted chain", |b| {
        b.iter(|| black_box(forwarded(peer, Some(black_box("203.0.113.7, 10.9.9.9")), &trusted)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
