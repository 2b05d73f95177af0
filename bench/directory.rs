//! The caller directory's cost, in-process: index bytes per stored number
//! (RSS before and after a full sync's indexing), the time to index a
//! sync's records (reading every stored number with libphonenumber, then
//! sorting the arrays), the time of one look-up (p50, p99, max), and the
//! same after incremental syncs edited 1% of the records. No HTTP: `tests/it/directory.rs` runs syncs
//! end to end; this measures what they feed.
//!
//!     cargo run --release --example directory [RECORDS]

#[path = "machine.rs"]
mod machine;

use std::time::{Duration, Instant};

use minijinja::Value;
use thirdparty_gateway::backend::request::{BodySpec, RequestSpec, UrlSpec};
use thirdparty_gateway::directory::{Directory, DirectorySettings};
use thirdparty_gateway::extract::JsonPath;
use thirdparty_gateway::phone::Number;

/// The gateway's allocator, so the memory is the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory, once the allocator returned what was freed: mimalloc
/// keeps freed pages for a second (its purge delay) before giving them back,
/// so a measure right after a build would count its scratch space too.
fn rss_bytes() -> u64 {
    std::thread::sleep(Duration::from_millis(1200));
    // Freeing a page of its own lets mimalloc purge what is past its delay
    // (it does so whenever a page is freed, in a gateway all the time).
    std::hint::black_box(vec![1u8; 1 << 20]);
    resident()
}

/// The largest resident memory so far (VmHWM), in bytes.
fn peak_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn resident() -> u64 {
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
        snapshot_every: Duration::from_secs(300),
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
        shown_headers: Default::default(),
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
    let record = |i: u64, name: &str| serde_json::json!({"id": i, "name": format!("{name} {i}"), "phone": stored(i)});
    // A full sync: pages of 1000 records, made as the sync reads them.
    let before = rss_bytes();
    let started = Instant::now();
    let pages = (0..records.div_ceil(1000)).map(|p| {
        (p * 1000..((p + 1) * 1000).min(records))
            .map(|i| record(i, "Contact"))
            .collect::<Vec<_>>()
    });
    let entries = directory.rebuild(pages).expect("the index");
    let indexing = started.elapsed();
    let peak = peak_bytes();
    let right_after = resident();
    let after = rss_bytes();
    let callers = callers(records, region);
    let full = lookups(&directory, &callers);

    // Then incremental syncs edit 1% of the records (a new name), kept
    // beside the arrays until they are folded in.
    let edits = records / 100;
    let before_edits = rss_bytes();
    let started = Instant::now();
    let edit = |k: u64| record((k * 97) % records, "Edited");
    let mut after_edits = entries;
    let mut edited_records = 0;
    for chunk in (0..edits).collect::<Vec<_>>().chunks(1000) {
        let page: Vec<_> = chunk.iter().map(|&k| edit(k)).collect();
        let (changed, len) = directory.apply(&page).expect("the index");
        (edited_records, after_edits) = (edited_records + changed, len);
    }
    let editing = started.elapsed();
    let edited = rss_bytes();
    let changed = lookups(&directory, &callers);
    // The next incremental syncs bring the same records back (their
    // `since_overlap_s`): read and compared, nothing changes.
    let pages: Vec<Vec<_>> = (0..edits)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| chunk.iter().map(|&k| edit(k)).collect())
        .collect();
    let started = Instant::now();
    let mut again = 0;
    for page in &pages {
        again += directory.apply(page).expect("the index").0;
    }
    let seen_again = started.elapsed();

    let per_number = (after.saturating_sub(before)) as f64 / entries.max(1) as f64;
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| records indexed | {records} ({entries} numbers) |");
    println!(
        "| index memory (RSS delta) | {:.1} MB, {per_number:.0} B per number |",
        (after - before.min(after)) as f64 / 1e6
    );
    println!(
        "| memory during the full sync (peak RSS delta; right after it) | {:.1} MB; {:.1} MB |",
        (peak.saturating_sub(before)) as f64 / 1e6,
        (right_after.saturating_sub(before)) as f64 / 1e6
    );
    println!(
        "| full sync's indexing (read, arrays sorted) | {:.2} s, {:.1} µs per record |",
        indexing.as_secs_f64(),
        indexing.as_secs_f64() * 1e6 / records as f64
    );
    println!("| look-up | {full} |");
    println!(
        "| {edits} edits applied (1%), beside the arrays | {:.2} s, +{:.1} MB, {edited_records} changed, {after_edits} numbers |",
        editing.as_secs_f64(),
        (edited.saturating_sub(before_edits)) as f64 / 1e6
    );
    println!("| look-up after the edits | {changed} |");
    println!(
        "| the {edits} edited records seen again (a sync's overlap) | {:.2} s, {again} changed |",
        seen_again.as_secs_f64()
    );
    println!(
        "| machine load (1, 5, 15 min) | {} |",
        machine::load_average()
    );
}

/// Numbers in the index, in the caller's E.164 shape.
fn callers(records: u64, region: Option<thirdparty_gateway::template::Region>) -> Vec<Number> {
    let samples = 100_000u64.min(records);
    (0..samples)
        .filter_map(|i| {
            let i = (i * 7919) % records;
            Number::read_caller(&format!("+336{:08}", i % 100_000_000), region)
        })
        .collect()
}

/// Looks every caller up: how many were found, p50, p99 and max.
fn lookups(directory: &Directory, callers: &[Number]) -> String {
    let mut times = Vec::with_capacity(callers.len());
    let mut found = 0;
    for caller in callers {
        let t = Instant::now();
        let hit = directory.entry(caller);
        times.push(t.elapsed());
        found += usize::from(hit.is_some());
        std::hint::black_box(hit);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    format!(
        "{found} of {} found: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        callers.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e6
    )
}
