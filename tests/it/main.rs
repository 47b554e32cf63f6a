//! The integration suite: one test binary (one link), real SQLite, PostgreSQL and Redis.

mod bus_conformance;
mod channels_crash;
mod channels_discord;
mod channels_doubles;
mod channels_telegram;
mod channels_whatsapp;
mod crash;
mod daemon;
mod store_conformance;
mod support;
