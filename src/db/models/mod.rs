//! Row types, insert and update forms, and the query functions for each table. Every function
//! takes `&mut AsyncPgConnection`, so callers can compose them in one transaction.

pub mod api_key;
pub mod delivery_attempt;
pub mod event;
pub mod login_failure;
pub mod session;
pub mod subscription;
pub mod user;
