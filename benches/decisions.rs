//! The request path's two decisions, alone: the routing lookup and the
//! balancer's pick. `cargo bench --bench decisions`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice::pods::server_load::ServerView;
use sluice::pods::{pick, Slot};
use sluice::routing::RouteTable;
use std::hint::black_box;

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for services in [1usize, 100, 10_000] {
        let entries: Vec<(usize, Vec<String>, String)> = (0..services)
            .map(|i| {
                (
                    i,
                    vec![format!("model-{i}.team-{}.example.com", i % 7)],
                    format!("model-{i}"),
                )
            })
            .collect();
        let (table, _) = RouteTable::build(
            entries
                .iter()
                .map(|(i, hosts, name)| (*i, hosts.clone(), vec![name.as_str()])),
        );
        let host = format!(
            "model-{}.team-{}.example.com:30200",
            services / 2,
            (services / 2) % 7
        );
        group.bench_with_input(BenchmarkId::new("by_host", services), &host, |b, host| {
            b.iter(|| table.route(Some(black_box(host)), black_box("/v1/models/x:predict")))
        });
        let path = format!("/v1/models/model-{}:predict", services / 2);
        group.bench_with_input(BenchmarkId::new("by_path", services), &path, |b, path| {
            b.iter(|| table.route(Some(black_box("10.0.0.1:30200")), black_box(path)))
        });
    }
    group.finish();
}

fn balancing(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for pods in [2usize, 8, 16, 64] {
        let slots: Vec<Slot> = (0..pods)
            .map(|i| Slot {
                in_flight: i % 3,
                last_pick: i as u64,
                avoid: false,
                server: None,
            })
            .collect();
        let mut rng = fastrand::Rng::with_seed(1);
        group.bench_with_input(BenchmarkId::new("unlimited", pods), &slots, |b, slots| {
            b.iter(|| pick(slots.len(), |i| slots[i], 0, &mut rng))
        });
        // Every pod with a fresh reading of its model server (`podMetrics`).
        let read: Vec<Slot> = (slots.iter().enumerate())
            .map(|(i, s)| Slot {
                server: Some(ServerView {
                    queue: (i % 5) as f64,
                    kv_cache_usage: (i % 7) as f64 / 7.0,
                }),
                ..*s
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("by_server", pods), &read, |b, slots| {
            b.iter(|| pick(slots.len(), |i| slots[i], 0, &mut rng))
        });
        // Most pods full: the fallback scan.
        let full: Vec<Slot> = (0..pods)
            .map(|i| Slot {
                in_flight: if i == pods - 1 { 0 } else { 1 },
                last_pick: 0,
                avoid: false,
                server: None,
            })
            .collect();
        group.bench_with_input(
            BenchmarkId::new("limit_1_one_free", pods),
            &full,
            |b, slots| b.iter(|| pick(slots.len(), |i| slots[i], 1, &mut rng)),
        );
    }
    group.finish();
}

criterion_group!(benches, routing, balancing);
criterion_main!(benches);
