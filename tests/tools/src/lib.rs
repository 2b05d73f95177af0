//! `#[needs("chromium", "chromedriver")]` on an integration test: when one of
//! the tools is not on `PATH`, the test is `#[ignore]`d with the tools and
//! how to install them, so `cargo test` lists it as
//! `ignored, chromium not installed: apt-get install chromium` instead of
//! passing silently.
//!
//! Why a crate of its own: whether a tool is there is read when the tests
//! are compiled, and cargo must compile them again when it changes (a
//! build script watching `PATH`). A build script of the gateway's package
//! would do that for the gateway's library and binary too, so every
//! `apt install` would cost a rebuild of `cargo run -- check`. Here the
//! build script belongs to this dev-dependency, which only the tests build.

use proc_macro::{Delimiter, TokenStream, TokenTree};

mod tools;
use tools::TOOLS;

include!(concat!(env!("OUT_DIR"), "/found.rs"));

/// Ignores the test unless every named tool is on `PATH` (or `CI` is set).
#[proc_macro_attribute]
pub fn needs(args: TokenStream, item: TokenStream) -> TokenStream {
    let names = match tool_names(args) {
        Ok(names) => names,
        Err(message) => return error(&message),
    };
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !FOUND.contains(name))
        .collect();
    if missing.is_empty() {
        return item;
    }
    let reason = format!(
        "{} not installed: {}",
        missing.join(" or "),
        install_hint(&missing)
    );
    let mut out: TokenStream = format!("#[ignore = {reason:?}]")
        .parse()
        .expect("an ignore attribute parses");
    out.extend(item);
    out
}

/// The attribute's string literals, each a tool of [`TOOLS`].
fn tool_names(args: TokenStream) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for tree in args {
        match tree {
            TokenTree::Punct(p) if p.as_char() == ',' => {}
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                let name = text
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .ok_or_else(|| format!("#[needs]: {text} is not a tool name in quotes"))?;
                if !TOOLS.iter().any(|(tool, _)| *tool == name) {
                    let known: Vec<&str> = TOOLS.iter().map(|(t, _)| *t).collect();
                    return Err(format!(
                        "#[needs]: unknown tool {name:?}; add it to tests/tools/src/tools.rs (known: {})",
                        known.join(", ")
                    ));
                }
                names.push(name.to_owned());
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::None => {
                names.extend(tool_names(g.stream())?);
            }
            other => {
                return Err(format!(
                    "#[needs]: expected tool names in quotes, got {other}"
                ))
            }
        }
    }
    if names.is_empty() {
        return Err("#[needs]: name at least one tool, e.g. #[needs(\"curl\")]".into());
    }
    Ok(names)
}

/// One command line for all missing tools: the apt packages together,
/// anything else after them.
fn install_hint(missing: &[&str]) -> String {
    let mut packages: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for name in missing {
        let Some((_, hint)) = TOOLS.iter().find(|(tool, _)| tool == name) else {
            continue;
        };
        match hint.strip_prefix("apt-get install ") {
            Some(list) => {
                for package in list.split_whitespace() {
                    if !packages.contains(&package) {
                        packages.push(package);
                    }
                }
            }
            None if !others.contains(hint) => others.push(hint),
            None => {}
        }
    }
    let mut parts = Vec::new();
    if !packages.is_empty() {
        parts.push(format!("apt-get install {}", packages.join(" ")));
    }
    parts.extend(others.iter().map(|o| (*o).to_owned()));
    parts.join("; ")
}

fn error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .expect("a compile_error! call parses")
}

#[cfg(test)]
mod tests {
    use super::install_hint;

    #[test]
    fn apt_packages_go_on_one_line_and_other_installs_after_them() {
        assert_eq!(
            install_hint(&["chromium", "chromedriver"]),
            "apt-get install chromium chromium-driver"
        );
        assert_eq!(
            install_hint(&["cargo-deb", "systemd-analyze", "systemd-socket-activate"]),
            "apt-get install systemd; cargo install cargo-deb --locked"
        );
    }
}
