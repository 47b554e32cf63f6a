//! The integration suite: one test binary (one link), real SQLite, PostgreSQL and Redis.

mod brain_agent;
mod brain_doubles;
mod brain_memory;
mod brain_providers;
mod bus_conformance;
mod crash;
mod daemon;
mod store_conformance;
mod support;
