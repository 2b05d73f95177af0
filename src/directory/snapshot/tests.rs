use super::format::{decode, encode, Header, Refused, HEADER};
use crate::directory::compact::Builder;
use crate::directory::index::{Index, Key, Record};
use crate::directory::values;

const A: Key = (33, 612345678, 0);
const B: Key = (39, 612345, 1);
const C: Key = (1, 4155550101, 0);

fn values_of(name: &str) -> Box<[u8]> {
    let mut v = Vec::new();
    values::encode([Some(&serde_json::json!(name))].into_iter(), &mut v);
    v.into()
}

/// Marie (A, B) and a record without an id (C) from a full sync; then
/// Paul takes B, and a record without an id comes with A.
fn sample() -> Index {
    let mut b = Builder::default();
    b.push(Some(7), &[A, B], &values_of("Marie")).unwrap();
    b.push(None, &[C], &values_of("Nobody")).unwrap();
    let mut index = Index::new(b.finish());
    index.apply(vec![
        Record {
            id: Some(8),
            numbers: Box::new([B]),
            values: values_of("Paul"),
        },
        Record {
            id: Some(7),
            numbers: Box::new([A, B]),
            values: values_of("Marie M."),
        },
    ]);
    index
}

const H: Header = Header {
    definition: 42,
    built: 1_700_000_000,
    fresh: 1_700_000_060,
};

fn bytes(index: &Index) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&index.freeze(), H, &mut out).unwrap();
    out
}

fn name(index: &Index, k: Key) -> Option<String> {
    let entry = index.get(&k)?;
    let values = entry.values(&[(minijinja::Value::from("name"), path())]);
    Some(values.first()?.1.as_str()?.to_owned())
}

fn path() -> crate::extract::JsonPath {
    crate::extract::JsonPath::parse("name").unwrap()
}

#[test]
fn a_snapshot_reads_back_as_the_index_it_was_written_from() {
    let index = sample();
    let (back, h) = decode(&bytes(&index), 42).unwrap();
    assert_eq!(h, H);
    let back = Index::thaw(back.base, back.masked, back.changed);
    for k in [A, B, C, (33, 1, 0)] {
        assert_eq!(name(&back, k), name(&index, k), "{k:?}");
    }
    assert_eq!(name(&back, B).as_deref(), Some("Marie M."));
    assert_eq!(back.len(), 3);
    // Nothing folded: the arrays as they were, the changes beside them.
    let empty = bytes(&Index::default());
    let (t, _) = decode(&empty, 42).unwrap();
    assert_eq!(
        (t.base.records(), t.masked.len(), t.changed.len()),
        (0, 0, 0)
    );
}

#[test]
fn a_foreign_old_or_damaged_snapshot_is_refused_without_a_panic() {
    let bytes = bytes(&sample());
    assert!(matches!(decode(&bytes, 43), Err(Refused::Definition)));
    assert!(matches!(
        decode(br#"{"definition":42,"built":0,"fresh":0,"records":[]}"#, 42),
        Err(Refused::Format(_))
    ));
    let mut v2 = bytes.clone();
    v2[8] = 2;
    let e = decode(&v2, 42).unwrap_err().to_string();
    assert!(e.contains("version 2, this gateway reads 3"), "{e}");
    // Every truncation, and every single byte changed: refused or read,
    // never a panic.
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut], 42).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer, 42).is_err());
    for i in 0..bytes.len() {
        for x in [0u8, 1, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = x;
            if let Ok((t, _)) = decode(&b, 42) {
                let index = Index::thaw(t.base, t.masked, t.changed);
                let _ = (index.len(), name(&index, A), index.merged());
            }
        }
    }
    // A length that claims more than the file holds allocates nothing.
    let mut huge = bytes.clone();
    let numbers = HEADER as usize - 16;
    huge[numbers..numbers + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&huge, 42), Err(Refused::Damaged(_))));
    let mut many = bytes.clone();
    let changed = HEADER as usize - 4;
    many[changed..changed + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&many, 42), Err(Refused::Damaged(_))));
}
