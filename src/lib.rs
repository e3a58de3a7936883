//! sluice: a concurrency-aware reverse proxy, activator and autoscaler for model serving.
#![forbid(unsafe_code)]

pub mod actuator;
pub mod admin;
pub mod autoscaler;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod history;
pub mod kubernetes;
pub mod load_report;
pub mod logging;
pub mod metrics;
pub mod pods;
pub mod predictor;
pub mod probe;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod service;
pub mod shared;
pub mod sidecar;
pub mod supervise;
pub mod telemetry;
pub mod upstream;
pub mod webhook;
