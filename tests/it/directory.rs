//! The caller directory: a backend's index of the CRM's numbers, built by
//! paged full syncs and incremental ones of what changed, answering calls
//! in-process with no CRM request; the live look-up when the index cannot
//! say. Against a test CRM that pages its records (`offset`/`limit`, sorted
//! by id), filters by modification time, and can go down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::crm::{Answer, Crm};
use crate::phone_matrix::{assert_all, calls, people};
use crate::support::*;
use crate::test_crms::{query_of, PAYLOAD};

type Stamp = time::OffsetDateTime;

#[derive(Default)]
struct State {
    /// id → (name, its phone fields in the order of [`PHONE_FIELDS`],
    /// when it was last modified).
    records: std::collections::BTreeMap<u64, (String, Vec<String>, Stamp)>,
    pages: usize,
    /// Pages that asked for what changed since a time.
    since_pages: usize,
    lookups: usize,
    down: bool,
    /// Accepts connections and never answers (a hung CRM).
    hung: bool,
    /// Pages come back broken this way instead.
    broken: Option<&'static str>,
    /// The session pages need (`s=`), once a login made one.
    session: Option<String>,
    logins: usize,
    /// The session ends once this many pages were read (mid-sync).
    session_pages: Option<usize>,
}

/// A record's phone fields, as the test CRM names them.
const PHONE_FIELDS: [&str; 3] = ["phone", "mobile", "other"];

impl State {
    fn put(&mut self, id: u64, name: &str, phone: &str) {
        self.put_all(id, name, &[phone]);
    }

    fn put_all(&mut self, id: u64, name: &str, phones: &[&str]) {
        let now = time::OffsetDateTime::now_utc();
        let phones = phones.iter().map(|p| (*p).to_owned()).collect();
        self.records.insert(id, (name.into(), phones, now));
    }
}

/// `since` as the directory's default `since_format` writes it.
fn parse_since(text: &str) -> Option<Stamp> {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z",
    )
    .ok()?;
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|t| t.assume_utc())
}

/// The test CRM: `GET /contacts?offset=&limit=[&since=]` pages the records
/// by id (`since`, when not empty, keeps those modified after it, to the
/// second, as a SQL `modified > '...'` does), `GET /search?q=` is the live
/// look-up (every record offered).
async fn crm(state: Arc<Mutex<State>>) -> Crm {
    Crm::start(move |seen| {
        let mut s = state.lock().unwrap();
        if s.down {
            return Answer::Reply(503, "text/plain", "maintenance".into());
        }
        if s.hung {
            return Answer::Hang;
        }
        let q = query_of(&seen.target);
        let record = |id: &u64, (name, phones, _): &(String, Vec<String>, Stamp)| {
            let mut r = json!({"id": id, "name": name});
            for (field, phone) in PHONE_FIELDS.iter().zip(phones) {
                r[*field] = json!(phone);
            }
            r
        };
        if seen.target.starts_with("/login") {
            s.logins += 1;
            let session = format!("sess-{}", s.logins);
            s.session = Some(session.clone());
            return Answer::Reply(
                200,
                "application/json",
                json!({"session": session}).to_string(),
            );
        }
        if seen.target.starts_with("/contacts") && s.session_pages == Some(s.pages) {
            s.session_pages = None;
            s.session = Some("ended".into());
        }
        if let (Some(want), Some(got)) = (&s.session, q.get("s")) {
            if want != got {
                return Answer::Reply(
                    401,
                    "application/json",
                    r#"{"error":"session expired"}"#.into(),
                );
            }
        }
        if seen.target.starts_with("/search") {
            s.lookups += 1;
            let all: Vec<_> = s.records.iter().map(|(id, r)| record(id, r)).collect();
            return Answer::Reply(200, "application/json", json!({"data": all}).to_string());
        }
        s.pages += 1;
        match s.broken {
            Some("truncated") => {
                return Answer::Reply(200, "application/json", r#"{"data": [{"id": 1, "na"#.into())
            }
            Some("wrong type") => {
                return Answer::Reply(200, "application/json", r#"{"data": "everyone"}"#.into())
            }
            Some("huge") => {
                return Answer::Reply(
                    200,
                    "application/json",
                    format!(r#"{{"data": [], "pad": "{}"}}"#, "x".repeat(300_000)),
                )
            }
            Some("error as success") => {
                return Answer::Reply(
                    200,
                    "application/json",
                    r#"{"success": false, "error": {"code": "ACCESS_DENIED"}}"#.into(),
                )
            }
            // A page the CRM takes a minute to answer (a sync waits on it).
            Some("slow") => {
                return Answer::Slow(
                    Duration::from_secs(60),
                    200,
                    "application/json",
                    r#"{"data": []}"#.into(),
                )
            }
            _ => {}
        }
        let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
        let since = match q.get("since").map(String::as_str) {
            None | Some("") => None,
            Some(text) => match parse_since(text) {
                Some(t) => Some(t),
                None => return Answer::Reply(400, "text/plain", "bad since".into()),
            },
        };
        if since.is_some() {
            s.since_pages += 1;
        }
        let page: Vec<_> = s
            .records
            .iter()
            .filter(|(_, r)| since.is_none_or(|t| r.2.replace_nanosecond(0).unwrap_or(r.2) > t))
            .skip(offset)
            .take(limit)
            .map(|(id, r)| record(id, r))
            .collect();
        Answer::Reply(200, "application/json", json!({"data": page}).to_string())
    })
    .await
}

/// A backend `name` (each test its own, for its log lines) with a directory.
fn config(crm: &Crm, name: &str, directory: &str) -> String {
    format!(
        r#"{TLS_HEAD}[cors]
allow_origins = ["*"]
[phone]
default_region = "FR"

[backends.{name}]
url = "{url}/search"
encoding = "query"
body = {{ q = "{{{{ caller | phone_like }}}}" }}

[backends.{name}.reply]
format = "json"
records = "data"
phones = ["phone", "mobile", "other"]
extract = {{ id = "id", name = "name" }}
url = "https://crm.example.org/c/{{{{ id }}}}"
title = "{{{{ name }}}}"

[backends.{name}.directory]
url = "{url}/contacts"
body = {{ offset = "{{{{ page.offset }}}}", limit = "{{{{ page.size }}}}", since = "{{{{ since }}}}" }}
{directory}

[[routes]]
name = "{name}"
backend = "{name}"
"#,
        url = crm.url()
    )
}

fn call(caller: &str) -> String {
    PAYLOAD.replace("\"0612345678\"", &serde_json::to_string(caller).unwrap())
}

/// Waits (at most 30 s) for a log line holding every needle, after `skip`
/// such lines; returns how many there are now.
async fn wait_sync(needles: &[&str], skip: usize) -> usize {
    wait_sync_within(needles, skip, Duration::from_secs(30)).await
}

/// [`wait_sync`] for at most `within`.
async fn wait_sync_within(needles: &[&str], skip: usize, within: Duration) -> usize {
    let tries = within.as_millis() / 50;
    for _ in 0..tries {
        let lines: Vec<String> = log_lines(needles[0])
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect();
        if lines.len() > skip {
            return lines.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line with {needles:?}");
}

fn opened(reply: &Reply) -> Option<u64> {
    let v = reply.json();
    v["url"]
        .as_str()
        .and_then(|u| u.rsplit('/').next()?.parse().ok())
}

#[tokio::test]
async fn a_full_sync_answers_every_stored_shape_with_no_crm_request_and_nobody_else() {
    let state = Arc::new(Mutex::new(State::default()));
    for p in people() {
        state
            .lock()
            .unwrap()
            .put(u64::from(p.id), &format!("Person {}", p.id), p.stored);
    }
    let crm = crm(Arc::clone(&state)).await;
    let gw = start_gateway(&config(
        &crm,
        "dir-matrix",
        "page_size = 7\npages_per_second = 1000\nmax_age_s = 3600",
    ))
    .await;
    wait_sync(
        &[
            "backend=dir-matrix",
            "directory full sync",
            "24 record(s) in 4 page(s)",
        ],
        0,
    )
    .await;
    let client = gw.client();
    let mut results = Vec::new();
    for (caller, want) in calls() {
        let reply = client.post(gw.addr, None, &call(&caller)).await;
        results.push((caller, want, opened(&reply).map(|id| id as u32)));
    }
    // Strangers are not in the index: they go to the live look-up (which
    // offers every record, and the gateway refuses them all).
    let strangers = results.iter().filter(|(_, w, _)| w.is_none()).count();
    assert_all("the directory", &results);
    assert_eq!(
        state.lock().unwrap().lookups,
        strangers,
        "only misses ask the CRM"
    );
}

#[tokio::test]
async fn edits_arrive_with_the_next_incremental_sync_and_deletions_with_the_next_full_one() {
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    state.lock().unwrap().put(2, "Paul", "06 98 76 54 32");
    let crm = crm(Arc::clone(&state)).await;
    let gw = start_gateway(&config(
        &crm,
        "dir-edits",
        "every_s = 1\nfull_every_s = 3\nmax_age_s = 3600\npages_per_second = 1000",
    ))
    .await;
    wait_sync(
        &["backend=dir-edits", "directory full sync", "2 number(s)"],
        0,
    )
    .await;
    let client = gw.client();
    assert_eq!(
        opened(&client.post(gw.addr, None, &call("0612345678")).await),
        Some(1)
    );

    // Jeanne's number changes: the old one is gone, the new one opens her.
    state.lock().unwrap().put(1, "Jeanne", "+33 6 11 11 11 11");
    let needles = ["backend=dir-edits", "directory incremental sync"];
    let seen = wait_sync(&needles, 0).await;
    wait_sync(&needles, seen + 1).await;
    assert_eq!(
        opened(&client.post(gw.addr, None, &call("0611111111")).await),
        Some(1)
    );
    let lookups = state.lock().unwrap().lookups;
    assert_eq!(lookups, 0, "answered from the index");

    assert!(state.lock().unwrap().since_pages > 0);

    // Paul is deleted: the next full sync drops him.
    state.lock().unwrap().records.remove(&2);
    wait_sync(
        &["backend=dir-edits", "directory full sync", "1 number(s)"],
        0,
    )
    .await;
    let reply = client.post(gw.addr, None, &call("0698765432")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    assert!(
        state.lock().unwrap().lookups > lookups,
        "a miss asks the CRM"
    );
}

#[tokio::test]
async fn a_crm_that_goes_down_keeps_cards_opening_until_max_age_then_none_in_time() {
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    let crm = crm(Arc::clone(&state)).await;
    let gw = start_gateway(&config(
        &crm,
        "dir-down",
        "every_s = 1\nmax_age_s = 2\npages_per_second = 1000",
    ))
    .await;
    wait_sync(
        &["backend=dir-down", "directory full sync", "1 number(s)"],
        0,
    )
    .await;
    state.lock().unwrap().down = true;
    let client = gw.client();
    assert_eq!(
        opened(&client.post(gw.addr, None, &call("0612345678")).await),
        Some(1)
    );
    // Every sync now fails and the index ages past max_age_s.
    wait_sync(
        &["backend=dir-down", "directory sync failed", "HTTP 503"],
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    let lines = log_lines("route=dir-down ");
    assert!(
        lines.iter().any(|l| l.contains("reason=status")),
        "{lines:#?}"
    );
    // A CRM that hangs instead: the live look-up gives up at the deadline,
    // and the agent still gets its answer.
    {
        let mut s = state.lock().unwrap();
        s.down = false;
        s.hung = true;
    }
    let reply = client.post(gw.addr, None, &call("0612345678")).await;
    assert_eq!(reply.json(), json!({"action": "none"}));
    let lines = log_lines("route=dir-down ");
    assert!(
        lines.iter().any(|l| l.contains("reason=deadline")),
        "{lines:#?}"
    );
}

/// A French number (`lead` its first digit: 6 mobile, 1 fixed line, `n`
/// its last eight) stored the ways the caller matrix stores them: dots,
/// dashes, `+33 (0)`, `0033`, national, without its trunk 0, E.164,
/// international with spaces, a label after it, an extension, a `;ext=`,
/// and a second number after a slash (the first one counts).
fn french(shape: u64, lead: char, n: u64) -> (String, String) {
    let d = format!("{lead}{n:08}");
    let g = [&d[..1], &d[1..3], &d[3..5], &d[5..7], &d[7..]];
    let spaced = g.join(" ");
    let stored = match shape % 12 {
        0 => format!("0{}", g.join(".")),
        1 => format!("0{}", g.join("-")),
        2 => format!("+33 (0){spaced}"),
        3 => format!("0033 {spaced}"),
        4 => format!("0{d}"),
        5 => spaced,
        6 => format!("+33{d}"),
        7 => format!("+33 {spaced}"),
        8 => format!("0{spaced} (mobile)"),
        9 => format!("0{spaced} x12"),
        10 => format!("0{spaced};ext=12"),
        _ => format!("+33 {spaced} / 01 23 45 67 91"),
    };
    (stored, format!("+33{d}"))
}

/// A number of another country, `k` making it unique, stored as the
/// caller matrix stores them: the US with brackets, Belgium (fixed and
/// `0032` mobile), Switzerland, Germany, the UK, and Italy with its
/// leading zero.
fn foreign(shape: u64, k: u64) -> (String, String) {
    match shape % 7 {
        0 => {
            let n = (2_000_000_000 + k * 7).to_string();
            (
                format!("+1 ({}) {}-{}", &n[..3], &n[3..6], &n[6..]),
                format!("+1{n}"),
            )
        }
        1 => {
            let n = (20_000_000 + k).to_string();
            (
                format!("+32 2 {} {} {}", &n[1..4], &n[4..6], &n[6..]),
                format!("+32{n}"),
            )
        }
        2 => {
            let n = (470_000_000 + k).to_string();
            (
                format!("0032 {} {} {} {}", &n[..3], &n[3..5], &n[5..7], &n[7..]),
                format!("+32{n}"),
            )
        }
        3 => {
            let n = (780_000_000 + k).to_string();
            (
                format!("+41 {} {} {} {}", &n[..2], &n[2..5], &n[5..7], &n[7..]),
                format!("+41{n}"),
            )
        }
        4 => (
            format!("+49 30 {}", 1_000_000 + k),
            format!("+4930{}", 1_000_000 + k),
        ),
        5 => {
            let n = (2_070_000_000 + k).to_string();
            (
                format!("+44 20 {} {}", &n[2..6], &n[6..]),
                format!("+44{n}"),
            )
        }
        _ => {
            let n = 10_000_000 + k;
            let t = n.to_string();
            (
                format!("+39 06 {} {}", &t[..4], &t[4..]),
                format!("+3906{n}"),
            )
        }
    }
}

/// Record `i` of the 100 k: a mobile, a fixed line and a foreign number,
/// each (stored, E.164).
fn three_numbers(i: u64) -> [(String, String); 3] {
    [french(i, '6', i), french(i + 5, '1', i), foreign(i, i)]
}

#[tokio::test]
async fn a_full_sync_of_100k_records_with_three_phone_fields_in_every_stored_format_answers_them_all(
) {
    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().unwrap();
        for i in 0..100_000u64 {
            let numbers = three_numbers(i);
            let stored: Vec<&str> = numbers.iter().map(|(s, _)| s.as_str()).collect();
            s.put_all(i + 1, &format!("P{i}"), &stored);
        }
    }
    let crm = crm(Arc::clone(&state)).await;
    let gw = start_gateway(&config(
        &crm,
        "dir-100k",
        "page_size = 5000\npages_per_second = 1000\nmax_age_s = 3600",
    ))
    .await;
    // 300 000 numbers read by a debug build on a loaded machine: minutes.
    wait_sync_within(
        &[
            "backend=dir-100k",
            "directory full sync",
            "100000 record(s) in 21 page(s), 300000 number(s)",
        ],
        0,
        Duration::from_secs(300),
    )
    .await;
    let pages = state.lock().unwrap().pages;
    assert_eq!(
        pages, 21,
        "100000 records in pages of 5000, then an empty one"
    );
    // Every pair of shapes (12 French ones by 7 foreign ones), and a few
    // records further on: each of the three numbers opens its record.
    let client = gw.client();
    let sample = (0..84u64).chain([12_345, 54_321, 99_999]);
    for i in sample {
        for (stored, e164) in three_numbers(i) {
            assert_eq!(
                opened(&client.post(gw.addr, None, &call(&e164)).await),
                Some(i + 1),
                "{stored:?} called as {e164}"
            );
        }
    }
    assert_eq!(state.lock().unwrap().lookups, 0, "all from the index");

    // A reload of the same config keeps the index: no new full sync needed.
    gw.live.reload().unwrap();
    assert_eq!(
        opened(&client.post(gw.addr, None, &call("+33600000001")).await),
        Some(2)
    );
    assert_eq!(state.lock().unwrap().lookups, 0);
    assert!(log_lines("directory unchanged: its index carries over")
        .iter()
        .any(|l| l.contains("backend=dir-100k")));
}

#[test]
fn check_refuses_a_directory_without_records_or_reading_the_payload() {
    let crm_url = "http://127.0.0.1:9";
    let base = format!(
        "{TLS_HEAD}[cors]\nallow_origins = [\"*\"]\n[phone]\ndefault_region = \"FR\"\n\
         [backends.d]\nurl = \"{crm_url}/s\"\nencoding = \"query\"\n\
         [backends.d.reply]\nformat = \"json\"\nrecords = \"data\"\nphones = [\"phone\"]\n\
         extract = {{ id = \"id\" }}\nurl = \"https://crm.example.org/{{{{ id }}}}\"\n\
         [backends.d.directory]\nbody = {{ offset = \"{{{{ page.offset }}}}\" }}\n\
         [[routes]]\nname = \"r\"\nbackend = \"d\"\n"
    );
    let check = crate::check_cmd::check_ok;
    let (ok, text) = check(&base);
    assert!(ok, "{text}");
    for (config, want) in [
        (
            base.replace("records = \"data\"\nphones = [\"phone\"]\n", ""),
            "a directory indexes records by their phone numbers",
        ),
        (
            base.replace("page.offset", "caller"),
            "a directory sync runs for all calls: it cannot read `caller`",
        ),
        (
            base.replace("page.offset", "pag.offset"),
            "unknown variable \"pag\"",
        ),
        (
            base.replace(
                "[backends.d.directory]\n",
                "[backends.d.directory]\nsince_format = \"[yeer]\"\n",
            ),
            "is not a date format",
        ),
    ] {
        let (ok, text) = check(&config);
        assert!(!ok, "accepted, wanted {want:?}:\n{text}");
        assert!(text.contains(want), "{want}\n---\n{text}");
    }
}

#[tokio::test]
async fn broken_pages_leave_the_index_as_it_was_and_say_why() {
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    let crm = crm(Arc::clone(&state)).await;
    let text = config(
        &crm,
        "dir-broken",
        "full_every_s = 1\nmax_age_s = 3600\npages_per_second = 1000",
    )
    .replace(
        "encoding = \"query\"\n",
        "encoding = \"query\"\nmax_response_bytes = 100000\n",
    );
    let gw = start_gateway(&text).await;
    wait_sync(
        &["backend=dir-broken", "directory full sync", "1 number(s)"],
        0,
    )
    .await;
    let client = gw.client();
    for (broken, says) in [
        ("truncated", "reply is not JSON"),
        ("wrong type", "records is not a list"),
        ("huge", "max_response_bytes"),
        ("error as success", "no list of records"),
    ] {
        state.lock().unwrap().broken = Some(broken);
        wait_sync(&["backend=dir-broken", "directory sync failed", says], 0).await;
        assert_eq!(
            opened(&client.post(gw.addr, None, &call("0612345678")).await),
            Some(1),
            "{broken}"
        );
    }
    assert_eq!(
        state.lock().unwrap().lookups,
        0,
        "answered from the index all along"
    );
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains(
            "thirdparty_gateway_directory_lookups_total{backend=\"dir-broken\",result=\"hit\"} 4"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("thirdparty_gateway_directory_entries{backend=\"dir-broken\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_session_that_expires_during_a_sync_is_renewed_once() {
    let state = Arc::new(Mutex::new(State::default()));
    for i in 1..=10u64 {
        state
            .lock()
            .unwrap()
            .put(i, &format!("P{i}"), &format!("06 12 34 56 {:02}", i));
    }
    // The session ends after the second page of the first full sync.
    state.lock().unwrap().session_pages = Some(2);
    let crm = crm(Arc::clone(&state)).await;
    let text = config(
        &crm,
        "dir-login",
        "every_s = 1\nmax_age_s = 3600\npages_per_second = 1000\npage_size = 3",
    )
    .replace(
        "since = \"{{ since }}\" }",
        "since = \"{{ since }}\", s = \"{{ login.session }}\" }",
    )
    .replace(
        "[backends.dir-login.reply]",
        &format!(
            "[backends.dir-login.login]\n[[backends.dir-login.login.steps]]\nurl = \"{}/login\"\nencoding = \"form\"\nbody = {{ user = \"gw\" }}\nreply = {{ format = \"json\", extract = {{ session = \"session\" }} }}\n\n[backends.dir-login.reply]",
            crm.url()
        ),
    );
    let gw = start_gateway(&text).await;
    // Page 3 is refused, the gateway logs in again once and reads it, then
    // page 4: the sync ends whole.
    wait_sync(
        &[
            "backend=dir-login",
            "directory full sync",
            "10 record(s) in 4 page(s), 10 number(s)",
        ],
        0,
    )
    .await;
    assert_eq!(state.lock().unwrap().logins, 2, "one new login mid-sync");
    assert_eq!(
        opened(&gw.client().post(gw.addr, None, &call("0612345610")).await),
        Some(10)
    );
    // Between syncs too: the next page is refused, one login, the sync goes on.
    state.lock().unwrap().session = Some("dropped".into());
    let needles = ["backend=dir-login", "directory incremental sync"];
    let seen = wait_sync(&needles, 0).await;
    wait_sync(&needles, seen).await;
    let s = state.lock().unwrap();
    assert_eq!(s.logins, 3, "one new login");
    assert!(log_lines("backend=dir-login")
        .iter()
        .all(|l| !l.contains("directory sync failed")));
}

/// The metrics as `/metrics` shows them.
async fn metrics_text(gw: &TestGateway) -> String {
    gw.live.metrics.encode()
}

#[tokio::test]
async fn a_snapshot_survives_a_restart_and_answers_while_the_crm_is_down() {
    use std::os::unix::fs::PermissionsExt;
    let state = Arc::new(Mutex::new(State::default()));
    state
        .lock()
        .unwrap()
        .put(7, "Jeanne O'Neil", "06 12 34 56 78");
    state.lock().unwrap().put(8, "Paul", "+33 (0)6 98 76 54 32");
    let crm = crm(Arc::clone(&state)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let text = config(
        &crm,
        "dir-snap",
        &format!(
            "every_s = 1\nmax_age_s = 3600\npages_per_second = 1000\nstate_dir = {:?}",
            dir.path().display().to_string()
        ),
    );
    let first = start_gateway(&text).await;
    wait_sync(
        &["backend=dir-snap", "directory full sync", "2 number(s)"],
        0,
    )
    .await;
    let file = dir.path().join("directory-dir-snap.snapshot");
    for _ in 0..200 {
        if file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved = std::fs::read(&file).unwrap();
    let holds = |text: &str| saved.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(
        holds("Jeanne O'Neil") && !holds("06 12 34 56 78"),
        "only what the reply needs: {}",
        String::from_utf8_lossy(&saved)
    );
    first.shutdown().await;

    // Restarted while the CRM is down: the snapshot answers.
    state.lock().unwrap().down = true;
    let second = start_gateway(&text).await;
    wait_sync(&["backend=dir-snap", "directory read from its snapshot"], 0).await;
    let reply = second
        .client()
        .post(second.addr, None, &call("+33698765432"))
        .await;
    assert_eq!(opened(&reply), Some(8));
    assert_eq!(state.lock().unwrap().lookups, 0);
}

#[tokio::test]
async fn calls_are_answered_from_the_index_while_a_sync_waits_on_a_slow_crm() {
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    let crm = crm(Arc::clone(&state)).await;
    let gw = start_gateway(&config(
        &crm,
        "dir-busy",
        "full_every_s = 1\nmax_age_s = 3600\npages_per_second = 1000\ntimeout_ms = 120000",
    ))
    .await;
    wait_sync(
        &["backend=dir-busy", "directory full sync", "1 number(s)"],
        0,
    )
    .await;
    let fulls = log_lines("backend=dir-busy")
        .iter()
        .filter(|l| l.contains("directory full sync"))
        .count();
    // The next full sync's page hangs in the CRM.
    let pages = {
        let mut s = state.lock().unwrap();
        s.broken = Some("slow");
        s.pages
    };
    for _ in 0..600 {
        if state.lock().unwrap().pages > pages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        state.lock().unwrap().pages > pages,
        "a sync is waiting on its page"
    );
    // Calls meanwhile: answered from the index, on the same event loop as
    // the waiting sync, before it ends.
    let client = gw.client();
    for _ in 0..3 {
        assert_eq!(
            opened(&client.post(gw.addr, None, &call("0612345678")).await),
            Some(1)
        );
    }
    let now = log_lines("backend=dir-busy")
        .iter()
        .filter(|l| l.contains("directory full sync"))
        .count();
    assert_eq!(now, fulls, "the sync is still waiting on the CRM");
    assert_eq!(state.lock().unwrap().lookups, 0);
}

#[tokio::test]
async fn an_old_foreign_or_damaged_snapshot_is_ignored_with_a_log_line_and_a_full_sync_builds() {
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    let crm = crm(Arc::clone(&state)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let text = config(
        &crm,
        "dir-oldsnap",
        &format!(
            "max_age_s = 3600\npages_per_second = 1000\nstate_dir = {:?}",
            dir.path().display().to_string()
        ),
    );
    // A snapshot of version 1 (JSON) from an earlier gateway: removed.
    let old = dir.path().join("directory-dir-oldsnap.json");
    std::fs::write(
        &old,
        r#"{"definition":1,"built":0,"fresh":0,"records":[{"id":1,"numbers":[[33,612345678,0]],"values":[1,"Old"]}]}"#,
    )
    .unwrap();
    let file = dir.path().join("directory-dir-oldsnap.snapshot");
    let mut seen = 0;
    for (content, says) in [
        (None, "directory snapshot of an older format removed"),
        (
            Some(b"tpgw-dir\x09\x00\x00\x00".to_vec()),
            "not a directory snapshot of this version (version 9",
        ),
        (
            Some(b"{\"definition\":1}".to_vec()),
            "no directory snapshot's magic",
        ),
        (
            Some(b"tpgw-dir\x03\x00\x00\x00\x01".to_vec()),
            "damaged: truncated",
        ),
    ] {
        if let Some(content) = content {
            std::fs::write(&file, content).unwrap();
        }
        let gw = start_gateway(&text).await;
        wait_sync(&[says], 0).await;
        seen = wait_sync(
            &["backend=dir-oldsnap", "directory full sync", "1 number(s)"],
            seen,
        )
        .await;
        assert_eq!(
            opened(&gw.client().post(gw.addr, None, &call("0612345678")).await),
            Some(1),
            "{says}"
        );
        gw.shutdown().await;
    }
    assert!(!old.exists(), "the version 1 snapshot is gone");
    assert!(log_lines("directory read from its snapshot")
        .iter()
        .all(|l| !l.contains("backend=dir-oldsnap")));
}

/// [`config`] for the real binary: its own ports, no drain at a stop.
fn binary_config(crm: &Crm, name: &str, directory: &str) -> String {
    config(crm, name, directory).replacen(
        "[cors]\n",
        "[server]\nlisten = \"127.0.0.1:0\"\ndrain_ms = 0\n[ops]\nlisten = \"127.0.0.1:0\"\n[cors]\n",
        1,
    )
}

/// Waits (at most 30 s) for the file to exist.
async fn wait_file(file: &std::path::Path) {
    for _ in 0..600 {
        if file.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no file {}", file.display());
}

#[tokio::test]
async fn the_real_binary_answers_from_its_index_and_restarts_from_its_snapshot_while_the_crm_is_down(
) {
    use crate::ops::{sample, Daemon};
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(7, "Jeanne", "06 12 34 56 78");
    state
        .lock()
        .unwrap()
        .put_all(8, "Paul", &["+33 (0)6 98 76 54 32", "0033 1 23 45 67 89"]);
    let crm = crm(Arc::clone(&state)).await;
    let snapshots = tempfile::TempDir::new().unwrap();
    let text = binary_config(
        &crm,
        "dir-binary",
        &format!(
            "every_s = 1\nmax_age_s = 3600\npages_per_second = 1000\nstate_dir = {:?}",
            snapshots.path().display().to_string()
        ),
    );
    let first = Daemon::start(&text).await;
    first.wait_log("directory full sync").await;
    let reply = first.post(&call("+33612345678")).await;
    assert_eq!(opened(&reply), Some(7));
    let metrics = first.metrics().await;
    let backend = [("backend", "dir-binary")];
    assert_eq!(
        sample(&metrics, "thirdparty_gateway_directory_entries", &backend),
        3.0
    );
    assert_eq!(
        sample(
            &metrics,
            "thirdparty_gateway_directory_lookups_total",
            &[("backend", "dir-binary"), ("result", "hit")]
        ),
        1.0
    );
    let file = snapshots.path().join("directory-dir-binary.snapshot");
    wait_file(&file).await;
    // An edit the next incremental sync brings: the snapshot is not due
    // for five minutes (snapshot_every_s), so the stop writes it.
    state
        .lock()
        .unwrap()
        .put(7, "Jeanne Martin", "06 12 34 56 78");
    first.wait_log("in the index, 1 changed").await;
    assert!(!String::from_utf8_lossy(&std::fs::read(&file).unwrap()).contains("Jeanne Martin"));
    first.signal("TERM");
    let (status, _first) = first.wait_exit().await;
    assert!(status.success(), "{status}");
    assert!(
        String::from_utf8_lossy(&std::fs::read(&file).unwrap()).contains("Jeanne Martin"),
        "the stop wrote the last change"
    );

    // Restarted while the CRM is down: the snapshot answers, both of Paul's
    // numbers included, and Jeanne's new name.
    state.lock().unwrap().down = true;
    let second = Daemon::start(&text).await;
    second.wait_log("directory read from its snapshot").await;
    for number in ["0698765432", "+33123456789"] {
        assert_eq!(
            opened(&second.post(&call(number)).await),
            Some(8),
            "{number}"
        );
    }
    let reply = second.post(&call("0612345678")).await;
    assert_eq!(reply.json()["title"], json!("Jeanne Martin"));
    assert_eq!(state.lock().unwrap().lookups, 0, "no live look-up");
}

/// The snapshot's identity: a write replaces the file (a rename).
fn inode(file: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).unwrap().ino()
}

#[tokio::test]
async fn records_seen_again_unchanged_write_no_snapshot_and_a_change_writes_one_at_the_next_interval(
) {
    use crate::ops::{sample, Daemon};
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    state.lock().unwrap().put(2, "Paul", "06 98 76 54 32");
    let crm = crm(Arc::clone(&state)).await;
    let snapshots = tempfile::TempDir::new().unwrap();
    // Every incremental sync brings both records back (modified within
    // the default 120 s `since_overlap_s`).
    let gw = Daemon::start(&binary_config(
        &crm,
        "dir-writes",
        &format!(
            "every_s = 1\nsnapshot_every_s = 2\nmax_age_s = 3600\npages_per_second = 1000\nstate_dir = {:?}",
            snapshots.path().display().to_string()
        ),
    ))
    .await;
    let file = snapshots.path().join("directory-dir-writes.snapshot");
    let backend = "dir-writes";
    let count = |m: &prometheus_parse::Scrape, name: &str, result: &str| {
        sample(m, name, &[("backend", backend), ("result", result)])
    };
    // Waits (bounded) until `incremental_ok` passed `at_least`; returns
    // the metrics then.
    let syncs_past = |at_least: f64| {
        let gw = &gw;
        async move {
            for _ in 0..300 {
                let m = gw.metrics().await;
                if count(
                    &m,
                    "thirdparty_gateway_directory_syncs_total",
                    "incremental_ok",
                ) >= at_least
                {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("fewer than {at_least} incremental syncs");
        }
    };
    let writes = |m: &prometheus_parse::Scrape| {
        count(
            m,
            "thirdparty_gateway_directory_snapshot_writes_total",
            "ok",
        )
    };
    gw.wait_log("directory full sync").await;
    wait_file(&file).await;
    gw.wait_log("2 record(s) in 1 page(s), 2 number(s) in the index, 0 changed")
        .await;
    let m = syncs_past(1.0).await;
    let (after_full, seen) = (
        inode(&file),
        count(
            &m,
            "thirdparty_gateway_directory_syncs_total",
            "incremental_ok",
        ),
    );
    assert_eq!(writes(&m), 1.0, "the full sync's");
    // Five more syncs of the same records, more than two snapshot periods.
    let m = syncs_past(seen + 5.0).await;
    assert_eq!(writes(&m), 1.0, "records seen again are no change");
    assert_eq!(inode(&file), after_full);

    // One record changes: one write, at the next snapshot period.
    state
        .lock()
        .unwrap()
        .put(2, "Paul Durand", "06 98 76 54 32");
    let mut m = gw.metrics().await;
    for _ in 0..300 {
        if writes(&m) >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = gw.metrics().await;
    }
    assert_eq!(writes(&m), 2.0);
    assert_ne!(inode(&file), after_full);
    assert!(String::from_utf8_lossy(&std::fs::read(&file).unwrap()).contains("Paul Durand"));
    let seen = count(
        &m,
        "thirdparty_gateway_directory_syncs_total",
        "incremental_ok",
    );
    let m = syncs_past(seen + 5.0).await;
    assert_eq!(
        writes(&m),
        2.0,
        "the changed record, seen again, is no change"
    );
    assert_eq!(
        count(
            &m,
            "thirdparty_gateway_directory_snapshot_writes_total",
            "failed"
        ),
        0.0
    );
}

#[tokio::test]
async fn a_snapshot_write_that_hangs_at_a_stop_is_abandoned_and_the_previous_one_stays() {
    use crate::ops::Daemon;
    let state = Arc::new(Mutex::new(State::default()));
    state.lock().unwrap().put(1, "Jeanne", "06 12 34 56 78");
    let crm = crm(Arc::clone(&state)).await;
    let snapshots = tempfile::TempDir::new().unwrap();
    let text = binary_config(
        &crm,
        "dir-hung",
        &format!(
            "every_s = 1\nmax_age_s = 3600\npages_per_second = 1000\nstate_dir = {:?}",
            snapshots.path().display().to_string()
        ),
    );
    let mut gw = Daemon::start(&text).await;
    let file = snapshots.path().join("directory-dir-hung.snapshot");
    gw.wait_log("directory snapshot written").await;
    let before = std::fs::read(&file).unwrap();
    // The next write's temporary file is a FIFO nobody reads: opening it
    // blocks for ever, as a write to a hung disk would.
    let tmp = snapshots
        .path()
        .join(format!(".directory-dir-hung.snapshot.{}.tmp", gw.pid()));
    let made = std::process::Command::new("mkfifo").arg(&tmp).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    state
        .lock()
        .unwrap()
        .put(1, "Jeanne Martin", "06 12 34 56 78");
    gw.wait_log("in the index, 1 changed").await;
    gw.signal("TERM");
    // The stop waits 10 s for the write (DIRECTORY_STOP_SAVE), then goes.
    for _ in 0..600 {
        if !gw.alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, gw) = gw.wait_exit().await;
    assert!(status.success(), "{status}");
    gw.wait_log("directory snapshot not written in time at the stop: abandoned")
        .await;
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the previous snapshot stays"
    );

    // The next start removes the abandoned temporary file and reads the
    // previous snapshot; the next sync brings the change.
    let gw = Daemon::start(&text).await;
    gw.wait_log("directory read from its snapshot").await;
    gw.wait_log("in the index, 1 changed").await;
    assert!(!tmp.exists());
    let reply = gw.post(&call("0612345678")).await;
    assert_eq!(reply.json()["title"], json!("Jeanne Martin"));
}
