//! Integration tests: the real application against real PostgreSQL and RabbitMQ, delivering to
//! real HTTP endpoints on loopback.

mod assets;
mod browser;
mod cli;
mod cluster;
mod correctness;
mod dashboard;
mod dashboard_browser;
mod dashboard_events;
mod dashboard_sources;
mod delivery;
mod faults;
mod filters;
mod helpers;
mod ingest;
mod issues;
mod issues_browser;
mod listen;
mod live;
mod load;
mod operations;
mod policy;
mod providers;
mod providers_browser;
mod queue;
mod retries;
mod routing;
mod secrets;
mod signatures;
mod smtp;
mod sources_browser;
mod ssrf;
mod subscriptions;
mod teams;
mod teams_browser;
mod tenancy;
