//! Test CRMs that behave like real ones as their documentation and source
//! describe them (login, sessions, tokens, error codes), strictly: a request
//! the real CRM would refuse is refused here too.

pub mod dolibarr;
pub mod dynamics;
pub mod espocrm;
pub mod hubspot;
pub mod oauth;
pub mod odoo;
pub mod salesforce;
pub mod sugar;
pub mod suitecrm8;
pub mod vtiger;
pub mod vtql;
pub mod zoho;

use std::collections::HashMap;

/// A queue call from a logged-in agent (with token), whose caller the test
/// CRMs know as a national French number.
pub const PAYLOAD: &str = r#"{"user":{"userId":4,"agentId":1,"fullName":"Agent","token":"T"},"caller":"0612345678","callee":"1000","queue":{"id":2,"name":"sales","displayName":"Sales"},"userData":{}}"#;

/// [`PAYLOAD`] without the agent's token, for `simulate`'s printouts: it
/// redacts the token wherever it appears, and a one-letter token is
/// everywhere.
pub const PAYLOAD_NO_TOKEN: &str = r#"{"user":{"userId":4,"agentId":1,"fullName":"Agent"},"caller":"0612345678","callee":"1000","queue":{"id":2,"name":"sales","displayName":"Sales"},"userData":{}}"#;

/// The query string (or a form body) of a request, decoded.
pub fn fields(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// The query string of a request target.
pub fn query_of(target: &str) -> HashMap<String, String> {
    fields(target.split_once('?').map_or("", |(_, q)| q))
}

/// md5 in lowercase hex, as PHP's `md5()`.
pub fn md5_hex(text: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now in UTC, to the second, written as SQL datetimes are:
/// `YYYY-MM-DD HH:MM:SS`. What the PHP CRMs store for a modification time
/// (MySQL's `CURRENT_TIMESTAMP`, PHP's `date('Y-m-d H:i:s')`, Sugar's
/// `TimeDate::nowDb()`, EspoCRM's `getSystemNowString()`) and Odoo's
/// datetime fields, all in UTC as installed.
pub fn sql_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether `text` is written `YYYY-MM-DD HH:MM:SS`, the one datetime
/// literal these CRMs' filters take.
pub fn is_sql_datetime(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}
