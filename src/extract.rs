//! Pulling named values out of a backend's reply: a JSON pointer or dotted
//! path into JSON, an element path into XML that ignores namespace prefixes.
//!
//! Paths are parsed once at load; extraction is a single pass over the reply
//! with no allocation beyond the values found. XML is read with quick-xml,
//! which never expands DTD entities, so a hostile reply cannot blow up.

use serde_json::Value;

mod json_values;

pub use json_values::json_values;

/// Deepest XML nesting we follow; real SOAP replies are under 20 levels.
const MAX_XML_DEPTH: usize = 256;

/// A path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Box<str>>);

impl JsonPath {
    /// Parses a JSON pointer (`/results/0/url`, RFC 6901) or a dotted path
    /// (`results.0.url`). The empty path is the whole document.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Ok(Self(Vec::new()));
        }
        let segments: Vec<Box<str>> = if let Some(pointer) = raw.strip_prefix('/') {
            pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~").into_boxed_str())
                .collect()
        } else {
            raw.split('.').map(Into::into).collect()
        };
        if !raw.starts_with('/') && segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "{raw:?} has an empty segment: write a.b.c or a JSON pointer /a/b/c"
            ));
        }
        Ok(Self(segments))
    }

    /// The value at this path, if there is one; numeric segments index arrays.
    pub fn lookup<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        self.0
            .iter()
            .try_fold(doc, |node, segment| step(node, segment))
    }

    /// Every value at this path, where a `*` segment stands for each item
    /// of an array (or each value of an object): `phoneNumberData.*.phoneNumber`
    /// reads every number of a record that keeps a list of them. An array at
    /// the end of the path gives its items. At most `limit` values.
    pub fn lookup_all<'v>(&self, doc: &'v Value, limit: usize, out: &mut Vec<&'v Value>) {
        fn walk<'v>(node: &'v Value, rest: &[Box<str>], limit: usize, out: &mut Vec<&'v Value>) {
            if out.len() >= limit {
                return;
            }
            let Some((segment, rest)) = rest.split_first() else {
                match node {
                    Value::Array(items) => out.extend(items.iter().take(limit - out.len())),
                    _ => out.push(node),
                }
                return;
            };
            if segment.as_ref() == "*" {
                let items: Box<dyn Iterator<Item = &'v Value>> = match node {
                    Value::Array(items) => Box::new(items.iter()),
                    Value::Object(map) => Box::new(map.values()),
                    _ => return,
                };
                for item in items {
                    walk(item, rest, limit, out);
                }
            } else if let Some(next) = step(node, segment) {
                walk(next, rest, limit, out);
            }
        }
        walk(doc, &self.0, limit, out);
    }
}

fn step<'v>(node: &'v Value, segment: &str) -> Option<&'v Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// A path of element local names, optionally ending at an attribute:
/// `Envelope/Body/LookupResponse/CardUrl` or `.../Card/@href`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    elements: Vec<Box<[u8]>>,
    attribute: Option<Box<[u8]>>,
}

impl XmlPath {
    /// Parses `a/b/c` or `a/b/@attr`; a leading `/` is allowed, prefixes
    /// (`soap:Body`) are dropped because the document's prefixes may differ.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.strip_prefix('/').unwrap_or(raw);
        let mut parts: Vec<&str> = trimmed.split('/').collect();
        let attribute = match parts.last() {
            Some(last) if last.starts_with('@') => {
                let name = &last[1..];
                parts.pop();
                Some(local(name).as_bytes().into())
            }
            _ => None,
        };
        if parts.is_empty() || parts.iter().any(|p| p.is_empty() || p.contains('@')) {
            return Err(format!(
                "{raw:?} is not an element path such as Envelope/Body/Response/Url or Card/@href"
            ));
        }
        Ok(Self {
            elements: parts.iter().map(|p| local(p).as_bytes().into()).collect(),
            attribute,
        })
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Why an XML reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed (or not XML at all).
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    /// Nested deeper than we follow.
    #[error("XML nested deeper than {MAX_XML_DEPTH} levels")]
    TooDeep,
}

/// Finds each path's first match in one pass. An element's value is all the
/// text inside it (entities and CDATA resolved), trimmed; an attribute's is
/// its unescaped value.
pub fn xml_values(body: &[u8], paths: &[XmlPath]) -> Result<Vec<Option<String>>, XmlError> {
    use quick_xml::events::Event;

    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut found: Vec<Option<String>> = vec![None; paths.len()];
    // For each path being captured: the depth of its element.
    let mut capturing: Vec<Option<usize>> = vec![None; paths.len()];
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut saw_root = false;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(&e))?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                if stack.is_empty() && saw_root {
                    return Err(XmlError::Malformed("more than one root element".into()));
                }
                saw_root = true;
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(start.local_name().as_ref().to_vec());
                for (i, path) in paths.iter().enumerate() {
                    if found[i].is_some() || capturing[i].is_some() || !path.matches(&stack) {
                        continue;
                    }
                    match &path.attribute {
                        Some(attr) => {
                            for a in start.attributes() {
                                let a = a.map_err(|e| malformed(&e))?;
                                if a.key.local_name().as_ref() == attr.as_ref() {
                                    let v = a
                                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                        .map_err(|e| malformed(&e))?;
                                    found[i] = Some(v.into_owned());
                                    break;
                                }
                            }
                        }
                        None => {
                            found[i] = Some(String::new());
                            capturing[i] = Some(stack.len());
                        }
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    close(&mut stack, &mut capturing, &mut found);
                }
            }
            Event::End(_) => close(&mut stack, &mut capturing, &mut found),
            Event::Text(text) => {
                let text = text.decode().map_err(|e| malformed(&e))?;
                append(&capturing, &mut found, &text);
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| malformed(&e))?;
                append(&capturing, &mut found, &text);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| malformed(&e))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| malformed(&e))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::Malformed(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                append(&capturing, &mut found, &resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(XmlError::Malformed("no root element".into()));
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "document ends inside an element".into(),
        ));
    }
    Ok(found)
}

impl XmlPath {
    fn matches(&self, stack: &[Vec<u8>]) -> bool {
        stack.len() == self.elements.len()
            && stack
                .iter()
                .zip(self.elements.iter())
                .all(|(have, want)| have.as_slice() == want.as_ref())
    }
}

/// Leaves the current element: captures that started at it are complete.
fn close(stack: &mut Vec<Vec<u8>>, capturing: &mut [Option<usize>], found: &mut [Option<String>]) {
    let depth = stack.len();
    for (i, c) in capturing.iter_mut().enumerate() {
        if *c == Some(depth) {
            *c = None;
            if let Some(v) = &mut found[i] {
                let trimmed = v.trim();
                if trimmed.len() != v.len() {
                    *v = trimmed.to_owned();
                }
            }
        }
    }
    stack.pop();
}

fn append(capturing: &[Option<usize>], found: &mut [Option<String>], text: &str) {
    for (i, c) in capturing.iter().enumerate() {
        if c.is_some() {
            if let Some(v) = &mut found[i] {
                v.push_str(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn xml(body: &str, paths: &[&str]) -> Vec<Option<String>> {
        let paths: Vec<XmlPath> = paths.iter().map(|p| XmlPath::parse(p).unwrap()).collect();
        xml_values(body.as_bytes(), &paths).unwrap()
    }

    const SOAP: &str = r#"<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:crm">
  <soap:Body>
    <c:CustomerLookupResponse>
      <c:Found>true</c:Found>
      <c:CardUrl>https://crm/card?id=7&amp;x=&#49;</c:CardUrl>
      <c:Name><![CDATA[Dupont & <Fils>]]></c:Name>
      <c:Link href="/cards/7" rel="card"/>
    </c:CustomerLookupResponse>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn xml_paths_ignore_namespace_prefixes() {
        assert_eq!(
            xml(
                SOAP,
                &[
                    "Envelope/Body/CustomerLookupResponse/CardUrl",
                    "/S:Envelope/S:Body/x:CustomerLookupResponse/Name",
                    "Envelope/Body/CustomerLookupResponse/Link/@href",
                    "Envelope/Body/CustomerLookupResponse/Found",
                    "Envelope/Body/Missing",
                ]
            ),
            vec![
                Some("https://crm/card?id=7&x=1".into()),
                Some("Dupont & <Fils>".into()),
                Some("/cards/7".into()),
                Some("true".into()),
                None,
            ]
        );
    }

    #[test]
    fn xml_first_match_wins_and_empty_elements_are_empty() {
        assert_eq!(
            xml("<r><a>1</a><a>2</a><b/></r>", &["r/a", "r/b"]),
            vec![Some("1".into()), Some(String::new())]
        );
    }

    #[test]
    fn xml_garbage_is_an_error() {
        let p = [XmlPath::parse("a").unwrap()];
        for bad in [
            "not xml at all",
            "",
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "\u{0}\u{1}binary",
            "<a>&ent;</a>",
        ] {
            assert!(xml_values(bad.as_bytes(), &p).is_err(), "{bad:?}");
        }
        let deep = "<a>".repeat(MAX_XML_DEPTH + 1);
        assert!(matches!(
            xml_values(deep.as_bytes(), &p),
            Err(XmlError::TooDeep)
        ));
    }

    #[test]
    fn star_segments_read_every_item_and_lists_give_their_items() {
        let doc = serde_json::json!({
            "phone": "01", "mobile": ["02", "03"],
            "data": [{"n": "04"}, {"n": "05"}, {"x": 1}],
            "map": {"a": {"n": "06"}, "b": {"n": "07"}}
        });
        let all = |path: &str, limit: usize| {
            let mut out = Vec::new();
            JsonPath::parse(path)
                .unwrap()
                .lookup_all(&doc, limit, &mut out);
            out.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(all("phone", 10), r#""01""#);
        assert_eq!(all("mobile", 10), r#""02","03""#);
        assert_eq!(all("data.*.n", 10), r#""04","05""#);
        assert_eq!(all("/map/*/n", 10), r#""06","07""#);
        assert_eq!(all("data.*.n", 1), r#""04""#);
        assert_eq!(all("missing.*", 10), "");
        assert_eq!(all("phone.*", 10), "");
    }

    #[test]
    fn xml_path_syntax() {
        assert!(XmlPath::parse("a//b").is_err());
        assert!(XmlPath::parse("@x").is_err());
        assert!(XmlPath::parse("a/@x/b").is_err());
        assert!(XmlPath::parse("a/@ns:x").is_ok());
    }

    #[test]
    fn json_pointer_and_dotted_paths() {
        let doc = json!({"results": [{"url": "/c/1", "a/b": 2, "t~": 3}], "n": null});
        let get = |p: &str| JsonPath::parse(p).unwrap().lookup(&doc).cloned();
        assert_eq!(get("/results/0/url"), Some(json!("/c/1")));
        assert_eq!(get("results.0.url"), Some(json!("/c/1")));
        assert_eq!(get("/results/0/a~1b"), Some(json!(2)));
        assert_eq!(get("/results/0/t~0"), Some(json!(3)));
        assert_eq!(get("results.1.url"), None);
        assert_eq!(get("results.x"), None);
        assert_eq!(get("n"), Some(Value::Null));
        assert_eq!(get(""), Some(doc.clone()));
        assert!(JsonPath::parse("a..b").is_err());
    }

    /// Random documents (nested, duplicate and escaped keys, blanks) read
    /// for random paths: the text gives what the parsed document gives.
    #[test]
    fn random_documents_read_in_the_text_as_parsed() {
        struct Gen(crate::test_rng::Lcg);
        impl Gen {
            fn next(&mut self, n: u64) -> u64 {
                self.0.below(n as usize) as u64
            }
            fn blank(&mut self, out: &mut String) {
                out.push_str([" ", "", "", "\n\t", ""][self.next(5) as usize]);
            }
            fn value(&mut self, out: &mut String, depth: u32) {
                self.blank(out);
                let kind = match depth {
                    0 | 1 => 2 + self.next(4),
                    2 | 3 => self.next(6),
                    _ => self.next(4),
                };
                match kind {
                    0 => out.push_str(["1", "-2.5", "true", "null", "1e3"][self.next(5) as usize]),
                    1 => out.push_str(
                        ["\"a\"", "\"\\u0062\"", "\"]}\\\"\"", "\"\""][self.next(4) as usize],
                    ),
                    2 | 3 if depth > 3 => out.push('0'),
                    2 | 4 => {
                        out.push('{');
                        for i in 0..self.next(4) {
                            if i > 0 {
                                out.push(',');
                            }
                            self.blank(out);
                            out.push_str(
                                ["\"a\"", "\"b\"", "\"0\"", "\"\\u0061\"", "\"1\""]
                                    [self.next(5) as usize],
                            );
                            self.blank(out);
                            out.push(':');
                            self.value(out, depth + 1);
                        }
                        self.blank(out);
                        out.push('}');
                    }
                    _ => {
                        out.push('[');
                        for i in 0..self.next(4) {
                            if i > 0 {
                                out.push(',');
                            }
                            self.value(out, depth + 1);
                        }
                        self.blank(out);
                        out.push(']');
                    }
                }
                self.blank(out);
            }
        }
        let mut gen = Gen(crate::test_rng::Lcg::new(25));
        let segments = ["a", "b", "0", "1", "2", "x"];
        let (mut some, mut deep) = (0, 0);
        for _ in 0..10_000 {
            let mut doc = String::new();
            gen.value(&mut doc, 0);
            let document: Value = serde_json::from_str(&doc).unwrap();
            let paths: Vec<((), JsonPath)> = (0..gen.next(5) + 1)
                .map(|_| {
                    let path: Vec<&str> = (0..gen.next(4))
                        .map(|_| segments[gen.next(6) as usize])
                        .collect();
                    ((), JsonPath::parse(&path.join(".")).unwrap())
                })
                .collect();
            let found = json_values(&doc, &paths).unwrap();
            for (((), path), found) in paths.iter().zip(found) {
                let found = found.map(|t| serde_json::from_str::<Value>(t).unwrap());
                assert_eq!(found.as_ref(), path.lookup(&document), "{doc} {path:?}");
                some += usize::from(found.is_some());
                deep += usize::from(found.is_some() && path.0.len() >= 2);
            }
        }
        // Values are found, through nested objects and arrays too.
        assert!(some > 6_000 && deep > 300, "{some} {deep}");
    }

    /// Reading the paths in the text finds what reading them in the
    /// parsed document finds, for all of them at once (overlapping ones
    /// included) and for each alone, in every document here.
    #[test]
    fn paths_read_in_the_text_find_what_the_document_gives() {
        let docs = [
            r#"{"results":[{"url":"/c/1","a/b":2,"t~":3}],"n":null}"#,
            r#" { "found" : true , "customer" : { "card" : "https://crm/c/1" , "name" : "A\"B" } } "#,
            r#"{"d":1,"d":{"x":[10,20,{"y":"z"}]},"0":"zero","e\u0073c":"esc","":"empty"}"#,
            r#"{"d":{"x":[1],"y":2},"d":{"y":3}}"#,
            r#"[{"id":"7"},[1,[2,3]],"s",{"0":"key"}]"#,
            r#"{"deep":[[[{"a":{"b":[true,false,null,-1.5e3]}}]]],"s":"]}\\"}"#,
            r#""just a string""#,
            "42",
            "{}",
            "[]",
        ];
        let paths: Vec<((), JsonPath)> = [
            "",
            "/results/0/url",
            "results.0.a~1b",
            "/results/0/t~0",
            "/results/1/url",
            "n",
            "found",
            "customer",
            "customer.card",
            "customer.name",
            "customer.card.x",
            "d",
            "d.x",
            "d.x.1",
            "d.x.2.y",
            "d.x.3",
            "d.x.-1",
            "d.x.01",
            "d.y",
            "0",
            "esc",
            "/",
            "0.id",
            "1.1.0",
            "3.0",
            "2",
            "9",
            "deep.0.0.0.a.b.3",
            "deep.0.0.0.a",
            "s",
            "missing",
            "found.x",
        ]
        .iter()
        .map(|p| ((), JsonPath::parse(p).unwrap()))
        .collect();
        let parsed = |text: Option<&str>| text.map(|t| serde_json::from_str::<Value>(t).unwrap());
        for doc in docs {
            let document: Value = serde_json::from_str(doc).unwrap();
            let together = json_values(doc, &paths).unwrap();
            for (((), path), found) in paths.iter().zip(together) {
                let expected = path.lookup(&document);
                assert_eq!(parsed(found).as_ref(), expected, "{doc} {path:?}");
                let alone = json_values(doc, std::slice::from_ref(&((), path.clone()))).unwrap();
                assert_eq!(parsed(alone[0]).as_ref(), expected, "{doc} {path:?} alone");
            }
        }
        // Not JSON: refused, whichever paths are asked for.
        for bad in [
            "",
            " ",
            "{",
            "{\"a\":",
            "[1,",
            "{\"a\" 1}",
            "]",
            "{\"a\":1} x",
            "\"\n\"",
        ] {
            assert!(json_values(bad, &paths).is_err(), "{bad:?}");
            assert!(json_values::<()>(bad, &[]).is_err(), "{bad:?}");
        }
        // A number beyond f64 off the paths is skipped, as serde skips it.
        let big = r#"{"n":1e400,"u":"https://crm/1"}"#;
        let url = [((), JsonPath::parse("u").unwrap())];
        assert_eq!(
            json_values(big, &url).unwrap(),
            [Some(r#""https://crm/1""#)]
        );
    }
}
