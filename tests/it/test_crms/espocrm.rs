//! An EspoCRM REST API (`/api/v1/...`) for an API user whose authentication
//! method is HMAC, checked as EspoCRM checks it:
//! - `X-Hmac-Authorization` is base64 of `apiKey:hash`, split at the first
//!   `:`; the api key finds the user, and `hash` must equal
//!   `hash_hmac('sha256', METHOD . ' ' . resourcePath, secretKey)` in hex
//!   (EspoCRM 8.4.1 and later) or, the legacy form every version accepts,
//!   the raw 32-byte digest. `resourcePath` is the URI path after the base
//!   path `/api/v1`, without the query string (espocrm/espocrm
//!   `application/Espo/Core/Authentication/Logins/Hmac.php`,
//!   `application/Espo/Core/Utils/ApiKey.php` `hash`/`hashLegacy`,
//!   `application/Espo/Core/Api/RequestWrapper.php` `getResourcePath`). The
//!   official client signs `METHOD /path` without the query, in hex since
//!   its 1.0.0 (espocrm/php-espo-api-client `src/Client.php`).
//! - A request whose credentials fail or are missing gets HTTP 401 with an
//!   empty body (`application/Espo/Core/Api/Auth.php`; the real one adds
//!   `WWW-Authenticate: Basic realm=""` when there are none). An HMAC user
//!   cannot use `X-Api-Key`.
//! - A contact's numbers live in the PhoneNumber table, one of them primary;
//!   each keeps its `name` as stored (typed, or E.164 when international
//!   format is on and it was entered with a country code) and `numeric`,
//!   its digits only (`application/Espo/Repositories/PhoneNumber.php`
//!   `beforeSave`: `preg_replace('/[^0-9]/', '', $number)`).
//! - `GET /Contact?where[N][type]=..&where[N][attribute]=..&where[N][value]=..`
//!   ANDs its items. `equals` is `attribute = value`, `like` is `attribute
//!   LIKE value`, `contains` `LIKE %value%`, `startsWith` `LIKE value%`,
//!   `endsWith` `LIKE %value` (`application/Espo/Core/Select/Where/
//!   ItemGeneralConverter.php`), MySQL's `LIKE` and `_ci` comparison. On
//!   `phoneNumber` they compare each of the contact's numbers' `name`, on
//!   `phoneNumberNumeric` each one's `numeric`
//!   (`application/Espo/Core/Utils/Database/Orm/FieldConverters/Phone.php`,
//!   its `where` per operator: a subquery over EntityPhoneNumber, or a join
//!   on all numbers for `phoneNumber =`). An attribute the entity lacks is
//!   HTTP 400 (`Where/Checker.php`); other item types EspoCRM has are not
//!   modelled here and answer 400 too.
//! - The query string is decoded as PHP does (`+` is a space). `maxSize`
//!   over 200 is refused (403; `application/Espo/Core/Record/
//!   SearchParamsFetcher.php`). The reply is `{"total":N,"list":[...]}` with
//!   `id` and the `select`ed attributes; a list's `phoneNumber` is the
//!   primary number only, since `phoneNumberData` (all numbers) is loaded
//!   for a single record's read, not for lists
//!   (`application/Espo/Resources/metadata/app/fieldProcessing.json`:
//!   the PhoneNumber loader is in `readLoaderClassNameList`, not in
//!   `listLoaderClassNameList`), and `select=phoneNumberData` adds nothing
//!   to a list's rows (the attribute is not storable and has no select
//!   expression: `Core/Utils/Database/Orm/FieldConverters/Phone.php`); `total` 0 and an empty
//!   list when nothing matches (docs.espocrm.com/development/api-search-params).
//! - Paging as the caller directory reads it: `offset` (PHP's `intval`),
//!   `orderBy` (`id`, `name`, `createdAt`, `modifiedAt`; another name is
//!   HTTP 400 "Order by non-existing field", and id breaks ties as
//!   `Core/Select/Order/Applier.php` adds it) and `order` (`asc`/`desc`).
//!   `X-No-Total: true` skips the count: `total` is -1 when more records
//!   follow, -2 when not (`Core/Record/FindParamsFetcher.php`,
//!   `Core/Record/Collection.php` `TOTAL_HAS_MORE`/`TOTAL_HAS_NO_MORE`).
//! - `modifiedAt`: set when a contact is created and when a save changes it,
//!   its numbers included (`Core/Repositories/Database.php`
//!   `processCreatedAndModifiedFieldsSave`), in UTC as `Y-m-d H:i:s`
//!   (`DateTimeUtil::getSystemNowString`). `after`/`before` on it are
//!   `modifiedAt >`/`<` the value as written (no `dateTime` flag:
//!   `ItemGeneralConverter::processAfter`); `isNotNull` holds for every
//!   contact. A value that is not `Y-m-d H:i:s` is refused with 400 here:
//!   stricter than MySQL, which would compare what it could read, so a
//!   wrong `since_format` fails loudly.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;

use super::query_of;
use super::vtql::like;
use crate::crm::{Answer, Crm, Seen};

/// Where EspoCRM's API lives; the signed resource path is what follows.
const BASE_PATH: &str = "/api/v1";

/// The most records a list request may ask for, and what it gets without
/// `maxSize` (`recordListMaxSizeLimit`).
const MAX_SIZE: usize = 200;

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub secret_key: String,
    /// Before 8.4.1, only the raw digest was accepted.
    pub legacy_only: bool,
    pub contacts: Vec<Contact>,
    /// Look-ups answered, and requests refused with 401.
    pub lookups: usize,
    pub refused: usize,
    /// Requests refused with 400 or 403 (a bad search).
    pub bad_searches: usize,
    /// The `where[0][value]` of each look-up, decoded.
    pub values: Vec<String>,
    /// The query fields of each look-up, names sorted.
    pub queries: Vec<Vec<(String, String)>>,
    /// List requests that filtered or ordered by `modifiedAt`/`id` (the
    /// directory's pages), with their query fields; not look-ups.
    pub pages: Vec<Vec<(String, String)>>,
}

impl State {
    /// A contact's numbers changed as a save changes them: `modifiedAt` now.
    pub fn edit_numbers(&mut self, id: &str, numbers: &[&str]) {
        let c = self
            .contacts
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a known contact");
        c.numbers = numbers.iter().map(|n| (*n).to_owned()).collect();
        c.modified_at = super::sql_now();
    }
}

/// A contact: id, name, and its phone numbers as stored, the primary first.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub numbers: Vec<String>,
    /// `modifiedAt`, UTC `Y-m-d H:i:s`.
    pub modified_at: String,
}

impl Contact {
    pub fn new(id: &str, name: &str, numbers: &[&str]) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
            modified_at: super::sql_now(),
        }
    }
}

/// A running EspoCRM.
pub struct EspoCrm {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl EspoCrm {
    pub async fn start(api_key: &str, secret_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            secret_key: secret_key.into(),
            contacts: vec![Contact::new(
                "6571f0a2c3b9d4e18",
                "Jeanne O'Neil",
                &["+33612345678"],
            )],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }

    /// The API's base URL, as a recipe writes `https://crm.example.org/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}{BASE_PATH}", self.crm.url())
    }
}

/// The header EspoCRM 8.4.1+ expects for `method` on `resource_path`.
pub fn hmac_header(api_key: &str, secret_key: &str, method: &str, resource_path: &str) -> String {
    let digest = hmac(secret_key, &format!("{method} {resource_path}"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:{hex}"))
}

fn hmac(secret_key: &str, text: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret_key.as_bytes());
    ring::hmac::sign(&key, text.as_bytes()).as_ref().to_vec()
}

fn unauthorized(state: &mut State) -> Answer {
    state.refused += 1;
    Answer::Reply(401, "text/html", String::new())
}

/// Whether the request carries this user's valid signature.
fn signed(state: &State, seen: &Seen, resource_path: &str) -> bool {
    let Some(header) = seen.header("x-hmac-authorization") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(header) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (api_key, hash) = (&decoded[..colon], &decoded[colon + 1..]);
    if api_key.is_empty() || api_key != state.api_key.as_bytes() {
        return false;
    }
    let digest = hmac(
        &state.secret_key,
        &format!("{} {resource_path}", seen.method),
    );
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (!state.legacy_only && hash == hex.as_bytes()) || hash == digest.as_slice()
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    let Some(resource_path) = path.strip_prefix(BASE_PATH) else {
        return Answer::Reply(404, "text/html", "Not Found".into());
    };
    if !signed(state, seen, resource_path) {
        return unauthorized(state);
    }
    if (seen.method.as_str(), resource_path) != ("GET", "/Contact") {
        return Answer::Reply(404, "text/html", String::new());
    }
    let query = query_of(&seen.target);
    let get = |k: &str| query.get(k).map(String::as_str);
    let max_size = match get("maxSize").map(str::parse::<usize>) {
        None => MAX_SIZE,
        Some(Ok(n)) if n <= MAX_SIZE => n,
        _ => {
            state.bad_searches += 1;
            return Answer::Reply(403, "text/html", String::new());
        }
    };
    let mut items = Vec::new();
    for i in 0.. {
        let Some(kind) = get(&format!("where[{i}][type]")) else {
            break;
        };
        let attribute = get(&format!("where[{i}][attribute]")).unwrap_or("");
        let value = get(&format!("where[{i}][value]")).unwrap_or("");
        match Item::new(kind, attribute, value) {
            Ok(item) => items.push(item),
            Err(()) => {
                state.bad_searches += 1;
                return Answer::Reply(400, "text/html", String::new());
            }
        }
    }
    let offset = get("offset").map_or(0, php_intval);
    let descending = match get("order") {
        None | Some("asc" | "ASC") => false,
        Some("desc" | "DESC") => true,
        Some(_) => {
            state.bad_searches += 1;
            return Answer::Reply(400, "text/html", String::new());
        }
    };
    let order_by = match get("orderBy") {
        None | Some("") => None,
        Some(a @ ("id" | "name" | "createdAt" | "modifiedAt")) => Some(a),
        Some(_) => {
            state.bad_searches += 1;
            return Answer::Reply(400, "text/html", String::new());
        }
    };
    let mut fields: Vec<(String, String)> = query.clone().into_iter().collect();
    fields.sort();
    let paging = items
        .iter()
        .any(|i| matches!(i.attribute, Attribute::ModifiedAt));
    if paging {
        state.pages.push(fields);
    } else {
        state.lookups += 1;
        state
            .values
            .push(get("where[0][value]").unwrap_or("").to_owned());
        state.queries.push(fields);
    }
    let select: Option<Vec<&str>> = get("select").map(|s| s.split(',').collect());
    let shown = |a: &str| select.as_ref().is_none_or(|s| s.contains(&a));
    let mut found: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| items.iter().all(|i| i.holds(c)))
        .collect();
    if let Some(by) = order_by {
        let key = |c: &Contact| -> (String, String) {
            let value = match by {
                "name" => c.name.to_lowercase(),
                "createdAt" | "modifiedAt" => c.modified_at.clone(),
                _ => String::new(),
            };
            (value, c.id.clone())
        };
        found.sort_by_key(|c| key(c));
        if descending {
            found.reverse();
        }
    }
    let no_total = seen
        .header("x-no-total")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let total: i64 = if !no_total {
        found.len() as i64
    } else if found.len() > offset + max_size {
        -1
    } else {
        -2
    };
    let list: Vec<_> = found
        .iter()
        .skip(offset)
        .take(max_size)
        .map(|c| {
            let mut row = serde_json::Map::new();
            row.insert("id".into(), json!(c.id));
            if shown("name") {
                row.insert("name".into(), json!(c.name));
            }
            if shown("phoneNumber") {
                row.insert("phoneNumber".into(), json!(c.numbers.first()));
            }
            serde_json::Value::Object(row)
        })
        .collect();
    Answer::Reply(
        200,
        "application/json",
        json!({"total": total, "list": list}).to_string(),
    )
}

/// The attributes of a Contact this test CRM compares.
#[derive(Debug, Clone, Copy)]
enum Attribute {
    Name,
    /// Each number's `name`, as stored.
    PhoneNumber,
    /// Each number's `numeric`, its digits.
    PhoneNumberNumeric,
    /// `modifiedAt`, UTC `Y-m-d H:i:s`.
    ModifiedAt,
}

/// PHP's `intval` of a query value: its leading digits, else 0.
fn php_intval(text: &str) -> usize {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// One where item, as the SQL compares it: `=` a value or `LIKE` a pattern.
#[derive(Debug)]
struct Item {
    attribute: Attribute,
    /// How it compares: `=`, `LIKE`, `>`, `<`, or `IS NOT NULL`.
    op: ItemOp,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemOp {
    Equals,
    Like,
    After,
    Before,
    NotNull,
}

impl Item {
    fn new(kind: &str, attribute: &str, value: &str) -> Result<Self, ()> {
        let attribute = match attribute {
            "name" => Attribute::Name,
            "phoneNumber" => Attribute::PhoneNumber,
            "phoneNumberNumeric" => Attribute::PhoneNumberNumeric,
            "modifiedAt" => Attribute::ModifiedAt,
            _ => return Err(()),
        };
        let (op, value) = match kind {
            "equals" => (ItemOp::Equals, value.to_owned()),
            "like" => (ItemOp::Like, value.to_owned()),
            "contains" => (ItemOp::Like, format!("%{value}%")),
            "startsWith" => (ItemOp::Like, format!("{value}%")),
            "endsWith" => (ItemOp::Like, format!("%{value}")),
            "after" => (ItemOp::After, value.to_owned()),
            "before" => (ItemOp::Before, value.to_owned()),
            "isNotNull" => (ItemOp::NotNull, String::new()),
            _ => return Err(()),
        };
        // Only modifiedAt is modelled as a date-time, read strictly.
        let dated = matches!(op, ItemOp::After | ItemOp::Before);
        if dated != matches!(attribute, Attribute::ModifiedAt) && op != ItemOp::NotNull
            || dated && !super::is_sql_datetime(&value)
        {
            return Err(());
        }
        Ok(Self {
            attribute,
            op,
            value,
        })
    }

    fn holds(&self, contact: &Contact) -> bool {
        let compare = |stored: &str| match self.op {
            ItemOp::Equals => fold(stored) == fold(&self.value),
            ItemOp::Like => like(stored, &self.value),
            // Both Y-m-d H:i:s: as text, as in time.
            ItemOp::After => stored > self.value.as_str(),
            ItemOp::Before => stored < self.value.as_str(),
            ItemOp::NotNull => true,
        };
        match self.attribute {
            Attribute::ModifiedAt => compare(&contact.modified_at),
            Attribute::Name => compare(&contact.name),
            Attribute::PhoneNumber => contact.numbers.iter().any(|n| compare(n)),
            Attribute::PhoneNumberNumeric => contact
                .numbers
                .iter()
                .any(|n| compare(&n.chars().filter(char::is_ascii_digit).collect::<String>())),
        }
    }
}

/// MySQL's `=` under a `_ci` collation with PAD SPACE.
fn fold(s: &str) -> String {
    s.trim_end_matches(' ').to_lowercase()
}
