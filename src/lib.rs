//! Spenza: a webhook relay that makes every event durable before acknowledging it and delivers it
//! at least once.

pub mod admin;
pub mod api;
pub mod auth;
pub mod batch;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod health;
pub mod ingest;
pub mod issues;
pub mod listen;
pub mod live;
pub mod mail;
pub mod metrics;
pub mod problem;
pub mod queue;
pub mod request_id;
pub mod retention;
pub mod service;
pub mod shutdown;
pub mod signing;
pub mod startup;
pub mod state;
pub mod telemetry;
