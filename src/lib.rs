//! `thirdparty-gateway`: an HTTPS gateway between XiVO XucMgt's third-party
//! integration and legacy CRMs. A request flows `server` → `handler` (with
//! `cors`) → `contract` → `route` → `answer` (screen-pop or `backend`) →
//! reply; `config` builds everything once; `gateway::Live` swaps it on reload.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub mod accept;
pub mod answer;
pub mod backend;
pub mod check;
pub mod config;
pub mod console;
pub mod constants;
pub mod contract;
pub mod control;
pub mod cors;
pub mod daemon;
pub mod demo;
pub mod directory;
pub mod extract;
pub mod files;
pub mod gateway;
pub mod handler;
pub mod http_error;
pub mod idle;
pub mod json_scan;
pub mod log_output;
pub mod logging;
pub mod margin;
pub mod metrics;
pub mod on_wake;
pub mod ops;
pub mod outcome;
pub mod pages;
pub mod park;
pub mod payload;
pub mod phone;
pub mod plain_http;
pub mod reload;
pub mod request_id;
pub mod route;
pub mod server;
pub mod short_text;
pub mod simulate;
pub mod template;
#[cfg(test)]
mod test_rng;
pub mod tls;
pub mod trim;
pub mod unreadable;
pub mod watch;
pub mod wrap;
pub mod xuc;
