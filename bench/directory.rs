//! The caller directory's cost, in-process: index bytes per stored number
//! (RSS before and after indexing), the time to index a sync's records
//! (reading every stored number with libphonenumber), and the time of one
//! look-up (p50, p99, max). No HTTP: `tests/it/directory.rs` runs syncs
//! end to end; this measures what they feed.
//!
//!     cargo run --release --example directory [RECORDS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Value;
use thirdparty_gateway::backend::request::{BodySpec, RequestSpec, UrlSpec};
use thirdparty_gateway::directory::{Directory, DirectorySettings};
use thirdparty_gateway::extract::JsonPath;
use thirdparty_gateway::phone::Number;

/// The gateway's allocator, so the memory is the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn path(p: &str) -> JsonPath {
    JsonPath::parse(p).expect("a path")
}

/// Stored the ways people type them: one number per record.
fn stored(i: u64) -> String {
    let n = format!("6{:08}", i % 100_000_000);
    match i % 5 {
        0 => format!("0{n}"),
        1 => format!(
            "+33 {} {} {} {} {}",
            &n[..1],
            &n[1..3],
            &n[3..5],
            &n[5..7],
            &n[7..]
        ),
        2 => format!("0033{n}"),
        3 => format!("+33 (0){n}"),
        _ => format!(
            "0{}.{}.{}.{}.{}",
            &n[..1],
            &n[1..3],
            &n[3..5],
            &n[5..7],
            &n[7..]
        ),
    }
}

fn main() {
    let records: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let region = thirdparty_gateway::template::phone_region("FR");
    let settings = DirectorySettings {
        full_every: Duration::from_secs(3600),
        every: None,
        max_age: Duration::from_secs(7200),
        page_size: 1000,
        page_interval: Duration::ZERO,
        max_pages: 10_000,
        timeout: Duration::from_secs(30),
        since_format: Vec::new(),
        since_overlap: Duration::ZERO,
        snapshot: None,
    };
    let request = RequestSpec {
        method: http::Method::GET,
        url: UrlSpec::Fixed(url::Url::parse("http://127.0.0.1/").expect("a url")),
        body: BodySpec::Query(Vec::new()),
        headers: Vec::new(),
        auth: None,
        accept: http::HeaderValue::from_static("application/json"),
        confidential: false,
        follows_redirects: false,
    };
    let directory = Directory::new(
        settings,
        request,
        path("data"),
        vec![("phone".into(), path("phone"))],
        path("id"),
        None,
        vec![
            (Value::from("id"), path("id")),
            (Value::from("name"), path("name")),
        ],
        region,
        0,
    );
    thirdparty_gateway::phone::warm(region.expect("FR is a region"));
    let before = rss_bytes();
    let started = Instant::now();
    let mut page = Vec::with_capacity(1000);
    let mut entries = 0;
    for i in 0..records {
        page.push(serde_json::json!({"id": i, "name": format!("Contact {i}"), "phone": stored(i)}));
        if page.len() == 1000 {
            entries = directory.apply(&page);
            page.clear();
        }
    }
    if !page.is_empty() {
        entries = directory.apply(&page);
    }
    let indexing = started.elapsed();
    let after = rss_bytes();
    // Look-ups of numbers in the index, in the caller's E.164 shape.
    let samples = 100_000u64.min(records);
    let callers: Vec<Number> = (0..samples)
        .filter_map(|i| {
            let i = (i * 7919) % records;
            Number::read_caller(&format!("+336{:08}", i % 100_000_000), region)
        })
        .collect();
    let mut times = Vec::with_capacity(callers.len());
    let mut found = 0;
    for caller in &callers {
        let t = Instant::now();
        let hit = directory.entry(caller);
        times.push(t.elapsed());
        found += usize::from(hit.is_some());
        std::hint::black_box(hit.map(|e| Arc::strong_count(&e)));
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    let per_number = (after.saturating_sub(before)) as f64 / entries.max(1) as f64;
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| records indexed | {records} ({entries} numbers) |");
    println!(
        "| index memory (RSS delta) | {:.1} MB, {per_number:.0} B per number |",
        (after - before.min(after)) as f64 / 1e6
    );
    println!(
        "| indexing time (parse and insert) | {:.2} s, {:.1} µs per record |",
        indexing.as_secs_f64(),
        indexing.as_secs_f64() * 1e6 / records as f64
    );
    println!(
        "| look-up ({found} of {} found) | p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs |",
        callers.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e6
    );
}
