//! Streaming services of the live earthquake map: EMSC -> producer -> Kafka -> consumer -> store.

pub mod backoff;
pub mod config;
pub mod consumer;
pub mod fdsn;
pub mod health;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod producer;
pub mod service;
pub mod store;
pub mod web;
