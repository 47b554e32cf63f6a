//! The integration suite: one test binary (one link), real SQLite, PostgreSQL and Redis.

mod api_support;
mod auth;
mod brain_agent;
mod brain_doubles;
mod brain_memory;
mod brain_providers;
mod brain_think;
mod bus_conformance;
mod channels_crash;
mod channels_discord;
mod channels_doubles;
mod channels_telegram;
mod channels_whatsapp;
mod crash;
mod daemon;
mod end_to_end;
mod mcp_client;
mod mcp_server;
mod redis_restart;
mod resources;
mod store_conformance;
mod support;
mod user_cli;
