//! Integration tests: one binary, a module per area (keeps link time low).

mod support;

mod agent_e2e;
mod arrival;
mod backends;
mod browser;
mod check_cmd;
mod check_errors;
mod cors;
mod crm;
mod crm_login;
mod crm_oauth;
mod drain;
mod examples;
mod faults;
mod h2_slots;
mod headless;
mod hostile_values;
mod limits;
mod log_sink;
mod ops;
mod package;
mod pages;
mod recipe_espo_dolibarr;
mod recipe_sugar;
mod reload_watch;
mod rolling_restart;
mod routes;
mod simulate_cmd;
mod test_crms;
mod tls_versions;
mod token_redirects;
mod wrap;
mod wrap_browser;
mod wrap_limits;
mod xuc;
