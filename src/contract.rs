//! The XucMgt third-party contract as types: the payload the agent's browser
//! POSTs, and the reply it expects. The reply type makes a malformed answer
//! unrepresentable: `none` serializes to exactly `{"action":"none"}`, and an
//! `open` can only be built through [`Open::new`], which validates it.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::constants::{MAX_TITLE_CHARS, MAX_URL_LEN};

pub use crate::payload::{parse_payload, Payload, Secret};

/// What a payload field holds, as the contract documents it; `check` warns
/// about template paths that leave it (see `Shape` in `payload`, which
/// checks the same fields on every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A string or a number: nothing inside.
    Scalar,
    /// An object with these documented fields.
    Object(&'static [&'static str]),
    /// A map whose keys vary by call (`userData`'s dialplan variables).
    AnyKeys,
}

/// The payload's top-level fields and what each holds.
pub const PAYLOAD_FIELDS: [(&str, Field); 6] = [
    (
        "user",
        Field::Object(&[
            "userId",
            "agentId",
            "firstName",
            "lastName",
            "fullName",
            "token",
        ]),
    ),
    ("caller", Field::Scalar),
    ("callee", Field::Scalar),
    (
        "queue",
        Field::Object(&["id", "name", "displayName", "number"]),
    ),
    ("userData", Field::AnyKeys),
    ("callDataCallId", Field::Scalar),
];

/// Payloads as XucMgt sends them, one per kind of call (a direct call, a
/// queue call, a newer XucMgt's call with the agent's token): `check`
/// renders every template and condition against each.
pub const SAMPLE_PAYLOADS: [(&str, &str); 3] = [
    (
        "a direct call (no queue)",
        r#"{"user":{"userId":7,"agentId":3,"firstName":"Ada","lastName":"Lovelace","fullName":"Ada Lovelace"},"callee":"1007","caller":"0612345678","userData":{"XIVO_CONTEXT":"default","XIVO_USERID":"7","XIVO_SRCNUM":"0612345678","XIVO_DSTNUM":"1007"}}"#,
    ),
    (
        "a queue call",
        r#"{"user":{"userId":4,"agentId":1,"firstName":"James","lastName":"Bond","fullName":"James Bond"},"callee":"1000","caller":"1001","queue":{"id":2,"name":"trucks","displayName":"Trucks","number":"3001"},"userData":{"XIVO_CONTEXT":"default","XIVO_USERID":"2","XIVO_SRCNUM":"1001","XIVO_DSTNUM":"3001"}}"#,
    ),
    (
        "a queue call with the agent's token",
        r#"{"user":{"userId":4,"agentId":1,"firstName":"James","lastName":"Bond","fullName":"James Bond","token":"eyJhbGciOiJIUzI1NiJ9.eyJsb2dpbiI6Impib25kIn0.c2lnbmF0dXJl"},"callee":"3001","caller":"0298765432","queue":{"id":2,"name":"trucks","displayName":"Trucks","number":"3001"},"userData":{"XIVO_CONTEXT":"default","XIVO_USERID":"2","XIVO_SRCNUM":"0298765432","XIVO_DSTNUM":"3001","SIPCALLID":"a84b4c76e66710@pc33.example.org","USR_CONTRACT":"C-1234"},"callDataCallId":"1732520000.42"}"#,
    ),
];

/// The call event on which XucMgt opens the tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// When the phone rings.
    EventRinging,
    /// When the agent answers.
    EventEstablished,
    /// When an answered call hangs up.
    EventReleased,
}

impl Event {
    /// Parses the exact contract spelling; anything else is not an event.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EventRinging" => Some(Self::EventRinging),
            "EventEstablished" => Some(Self::EventEstablished),
            "EventReleased" => Some(Self::EventReleased),
            _ => None,
        }
    }
}

/// The reply XucMgt reads. The client reads fields without checking `action`,
/// so `None` must carry nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Reply {
    /// Open a tab.
    Open(Open),
    /// Do nothing.
    None,
}

/// A validated `open` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Open {
    event: Event,
    url: String,
    autopause: bool,
    title: String,
}

/// Why a would-be `open` reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOpen {
    /// The url does not parse as an absolute URL.
    #[error("url {0:?} is not an absolute URL")]
    NotAbsolute(String),
    /// The url is absolute but would run or embed something other than a web page.
    #[error("url scheme {0:?} is not http or https")]
    Scheme(String),
    /// The url carries a user name or password (`user:pass@host`): a
    /// credential for the agent's browser to see, or a host that reads as
    /// another (`https://xuc.example.org@evil.example/`).
    #[error("url has user info (a name or password before `@host`)")]
    UserInfo,
    /// The url is longer than a browser should be handed.
    #[error("url is {0} bytes, over the {MAX_URL_LEN}-byte limit")]
    TooLong(usize),
}

impl Open {
    /// Builds an `open` reply, refusing any url the agent's browser should not
    /// load inside XucMgt, and cleaning the title of control characters.
    pub fn new(event: Event, url: &str, autopause: bool, title: &str) -> Result<Self, InvalidOpen> {
        let url = url.trim();
        if url.len() > MAX_URL_LEN {
            return Err(InvalidOpen::TooLong(url.len()));
        }
        let parsed = Url::parse(url).map_err(|_| InvalidOpen::NotAbsolute(url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(InvalidOpen::Scheme(parsed.scheme().to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(InvalidOpen::UserInfo);
        }
        Ok(Self {
            event,
            url: parsed.into(),
            autopause,
            title: clean_title(title),
        })
    }

    /// The event the tab opens on.
    pub fn event(&self) -> Event {
        self.event
    }

    /// The absolute http(s) url of the tab.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the agent is paused while the tab is open.
    pub fn autopause(&self) -> bool {
        self.autopause
    }

    /// The tab title.
    pub fn title(&self) -> &str {
        &self.title
    }
}

/// Removes control characters, folds runs of white space, trims and bounds
/// the title, so a hostile CRM value cannot break the tab bar.
fn clean_title(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_TITLE_CHARS * 4));
    let mut pending_space = false;
    let mut chars = 0;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        if chars + usize::from(pending_space) >= MAX_TITLE_CHARS {
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// The invisible format characters (Unicode category Cf, less those that
/// show a mark): bidirectional controls can make a title read differently
/// from what it is, zero-width ones can make two titles that look alike
/// differ, or hide text in one.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' // soft hyphen
            | '\u{061C}' // Arabic letter mark
            | '\u{180E}' // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space, (non-)joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{206F}' // bidi isolates, deprecated format controls
            | '\u{FEFF}' // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical format controls
            | '\u{E0001}' // language tag
            | '\u{E0020}'..='\u{E007F}' // tags
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(url: &str) -> Result<Open, InvalidOpen> {
        Open::new(Event::EventRinging, url, false, "t")
    }

    /// Found by the payload fuzzer: the token's value elsewhere in a
    /// payload is just data, but `user` as templates see it never holds it.
    #[test]
    fn fuzz_regression_token_elsewhere_never_in_user() {
        let body = include_bytes!("../tests/fixtures/fuzz/payload-token-elsewhere.json");
        if let Ok(payload) = parse_payload(body) {
            let json = serde_json::to_value(&payload).unwrap();
            assert!(json["user"].get("token").is_none(), "{json}");
            assert!(payload.token().is_some());
        }
    }

    #[test]
    fn none_serializes_to_exactly_action_none() {
        assert_eq!(
            serde_json::to_string(&Reply::None).unwrap(),
            r#"{"action":"none"}"#
        );
    }

    #[test]
    fn open_serializes_to_the_contract_shape() {
        let reply = Reply::Open(
            Open::new(
                Event::EventReleased,
                "https://crm.example.org/c?id=1",
                true,
                "Card",
            )
            .unwrap(),
        );
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"action":"open","event":"EventReleased","url":"https://crm.example.org/c?id=1","autopause":true,"title":"Card"}"#
        );
    }

    #[test]
    fn only_absolute_http_urls_are_accepted() {
        assert!(open("http://crm/x").is_ok());
        assert!(open(" https://crm.example.org/ ").is_ok());
        assert_eq!(
            open("/relative"),
            Err(InvalidOpen::NotAbsolute("/relative".into()))
        );
        assert_eq!(
            open("javascript:alert(1)"),
            Err(InvalidOpen::Scheme("javascript".into()))
        );
        assert_eq!(
            open("data:text/html,x"),
            Err(InvalidOpen::Scheme("data".into()))
        );
        assert_eq!(
            open("file:///etc/passwd"),
            Err(InvalidOpen::Scheme("file".into()))
        );
        for with_user in [
            "http://user:pass@crm/x",
            "https://xuc.example.org@evil.example/",
            "https://:pw@crm/",
            "https://u@crm/",
        ] {
            assert_eq!(open(with_user), Err(InvalidOpen::UserInfo), "{with_user}");
        }
        assert!(matches!(
            open(&format!("https://a/{}", "x".repeat(MAX_URL_LEN))),
            Err(InvalidOpen::TooLong(_))
        ));
    }

    #[test]
    fn titles_lose_control_characters_and_are_bounded() {
        assert_eq!(
            clean_title("  Caller\n\t0612\u{0}34 \u{202E}x  "),
            "Caller 061234 x"
        );
        assert_eq!(
            clean_title(&"é".repeat(500)).chars().count(),
            MAX_TITLE_CHARS
        );
        assert_eq!(clean_title(""), "");
        let hidden = [
            '\u{AD}',
            '\u{61C}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{206F}',
            '\u{FEFF}',
            '\u{FFF9}',
            '\u{1BCA0}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
        ];
        for c in hidden {
            assert_eq!(
                clean_title(&format!("Dup{c}ont")),
                "Dupont",
                "U+{:04X}",
                c as u32
            );
        }
        // Visible text, including joined scripts, stays.
        assert_eq!(clean_title("Dupont é ش 日本 😀"), "Dupont é ش 日本 😀");
    }

    #[test]
    fn token_is_never_serialized_or_debug_printed() {
        let p = parse_payload(
            br#"{"user":{"userId":1,"token":"sekret"},"caller":"1","callee":"2","future":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(p.token().map(Secret::expose), Some("sekret"));
        assert!(!format!("{p:?}").contains("sekret"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("sekret"));
        assert!(json.contains(r#""future":{"a":1}"#));
    }
}
