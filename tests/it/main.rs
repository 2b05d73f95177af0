//! Integration tests: one binary, a module per area (keeps link time low).

mod support;

mod browser;
mod check_cmd;
mod cors;
mod limits;
mod routes;
