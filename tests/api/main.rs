//! Integration tests: the real application against real PostgreSQL and RabbitMQ, delivering to
//! real HTTP endpoints on loopback.

mod cli;
mod delivery;
mod helpers;
mod ingest;
mod load;
mod subscriptions;
mod tenancy;
