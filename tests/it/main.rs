//! The integration suite: one test binary (one link), real SQLite, PostgreSQL and Redis.

mod bus_conformance;
mod crash;
mod daemon;
mod mcp_client;
mod mcp_server;
mod store_conformance;
mod support;
