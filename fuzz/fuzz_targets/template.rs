//! Template rendering with hostile values: whatever the caller number holds,
//! a URL template gives a valid URL whose query decodes back to the value,
//! and an XML template gives well-formed XML whose text is the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minijinja::context;
use thirdparty_gateway::template::{Escape, Templates};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data).into_owned();
    let mut t = Templates::new();
    let url = t
        .add(
            "url",
            "https://crm.example.org/s?q={{ v }}&n=1",
            Escape::Url,
        )
        .unwrap();
    let xml = t.add("xml", "<a>{{ v }}</a>", Escape::Xml).unwrap();
    let text = t.add("text", "{{ v | digits }}", Escape::None).unwrap();
    // One-variable templates are answered without the engine: same rules.
    let url_var = t.add("url_var", "{{ v }}", Escape::Url).unwrap();
    let xml_var = t.add("xml_var", "{{ v }}", Escape::Xml).unwrap();
    let text_var = t.add("text_var", "{{ v }}", Escape::None).unwrap();
    let ctx = context! { v => value.clone() };

    let out = t.render(&url, &ctx).unwrap();
    let parsed = url::Url::parse(&out).expect("always a URL");
    let q = parsed
        .query_pairs()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned());
    // Form decoding turns '+' into a space; percent-encoding never emits '+'.
    assert_eq!(q.as_deref(), Some(value.as_str()), "{out}");
    assert_eq!(
        parsed.query_pairs().count(),
        2,
        "a value cannot add parameters: {out}"
    );

    let out = t.render(&xml, &ctx).unwrap();
    // XML 1.0 cannot carry most control characters at all; only check the rest.
    if !value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        let paths = [thirdparty_gateway::extract::XmlPath::parse("a").unwrap()];
        let found = thirdparty_gateway::extract::xml_values(out.as_bytes(), &paths)
            .unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(found[0].as_deref(), Some(value.trim()), "{out:?}");
    }

    let out = t.render(&url_var, &ctx).unwrap();
    let decoded = percent_encoding::percent_decode_str(&out)
        .decode_utf8()
        .expect("UTF-8");
    assert_eq!(decoded, value.as_str(), "{out}");
    assert!(
        out.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%".contains(&b)),
        "{out}"
    );
    let out = t.render(&xml_var, &ctx).unwrap();
    assert!(!out.contains(['<', '>', '"', '\'']), "{out}");
    assert_eq!(t.render(&text_var, &ctx).unwrap(), value);

    let out = t.render(&text, &ctx).unwrap();
    assert!(out.bytes().all(|b| b.is_ascii_digit()));
});
