//! Reading a JSON reply's values in one pass of serde, without building
//! the document.
//!
//! A route extracts two or three values from a reply. Parsing the reply
//! into a `serde_json::Value` (every key and string allocated, every map
//! built, then all of it dropped) cost more than the rest of the reply's
//! reading (docs/performance.md). Here serde walks the text once: what lies
//! on no path is skipped as `IgnoredAny` (checked, not kept), a value at
//! the end of a path is kept as the slice of text it is, and only the
//! objects and arrays a path goes through are visited key by key.
//!
//! It reads as [`JsonPath::lookup`] reads a parsed document: the last of
//! duplicate keys wins, whole (a path through an earlier duplicate finds
//! nothing the later one lacks); a numeric segment indexes an array. The
//! document is checked as a full parse checks it, but for numbers beyond
//! f64 off the paths, which serde skips without reading.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::JsonPath;
use crate::json_scan::TextKey;

/// The text of each path's value in `text`, in the order of `paths`;
/// `Err` if `text` is not JSON.
pub fn json_values<'t, N>(
    text: &'t str,
    paths: &[(N, JsonPath)],
) -> Result<Vec<Option<&'t str>>, serde_json::Error> {
    let mut found = vec![None; paths.len()];
    let all: Vec<usize> = (0..paths.len()).collect();
    walk(text, paths, &all, 0, &mut found)?;
    Ok(found)
}

/// Reads one JSON value (`text`, whole) for the `active` paths, which all
/// went through `depth` segments to reach it.
fn walk<'t, N>(
    text: &'t str,
    paths: &[(N, JsonPath)],
    active: &[usize],
    depth: usize,
    found: &mut [Option<&'t str>],
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Step {
        paths,
        active,
        depth,
        found,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// One value on the way of the `active` paths.
struct Step<'a, 't, N> {
    paths: &'a [(N, JsonPath)],
    active: &'a [usize],
    depth: usize,
    found: &'a mut [Option<&'t str>],
}

impl<N> Step<'_, '_, N> {
    fn segments(&self, path: usize) -> &[Box<str>] {
        self.paths.get(path).map_or(&[], |(_, p)| &p.0)
    }

    /// The active paths whose next segment `matches`, or `None` when none
    /// does (the value is then skipped).
    fn next(&self, matches: impl Fn(&str) -> bool) -> Option<Vec<usize>> {
        let next: Vec<usize> = self
            .active
            .iter()
            .copied()
            .filter(|&p| self.segments(p).get(self.depth).is_some_and(|s| matches(s)))
            .collect();
        (!next.is_empty()).then_some(next)
    }

    /// A later duplicate replaces an earlier one whole: what the paths
    /// found through the earlier one is forgotten before it is read.
    fn forget(&mut self, paths: &[usize]) {
        for &p in paths {
            if let Some(slot) = self.found.get_mut(p) {
                *slot = None;
            }
        }
    }
}

impl<'de, N> DeserializeSeed<'de> for Step<'_, 'de, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let ends_here = self
            .active
            .iter()
            .any(|&p| self.segments(p).len() == self.depth);
        if !ends_here {
            return d.deserialize_any(self);
        }
        // A value a path ends at is kept as text; paths that go on (`c`
        // and `c.name` both extracted) read it again, which no common
        // config does.
        let raw = <&'de RawValue>::deserialize(d)?;
        let mut deeper = Vec::new();
        for &p in self.active {
            if self.segments(p).len() == self.depth {
                if let Some(slot) = self.found.get_mut(p) {
                    *slot = Some(raw.get());
                }
            } else {
                deeper.push(p);
            }
        }
        if !deeper.is_empty() {
            walk(raw.get(), self.paths, &deeper, self.depth, self.found)
                .map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

impl<'de, N> Visitor<'de> for Step<'_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<TextKey<'de>>()? {
            match self.next(|segment| segment == key.as_str()) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(next) => {
                    self.forget(&next);
                    map.next_value_seed(Step {
                        paths: self.paths,
                        active: &next,
                        depth: self.depth + 1,
                        found: &mut *self.found,
                    })?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let next = self.next(|segment| segment.parse::<usize>().ok() == Some(index));
            let more = match next {
                None => seq.next_element::<IgnoredAny>()?.is_some(),
                Some(next) => seq
                    .next_element_seed(Step {
                        paths: self.paths,
                        active: &next,
                        depth: self.depth + 1,
                        found: &mut *self.found,
                    })?
                    .is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    // A path that goes on into a scalar finds nothing.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}
