//! Nexus: a self-hosted AI home-server daemon. See README.md and DESIGN.md.

pub mod agent;
pub mod api;
pub mod app;
pub mod auth;
pub mod brain;
pub mod bus;
pub mod channels;
pub mod config;
pub mod doctor;
pub mod inbox;
pub mod mcp;
pub mod schedules;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod subagents;
pub mod tools;
