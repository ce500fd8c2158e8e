//! The imgcdn control plane: accounts, sessions, API keys, teams, email,
//! uploads and the Images API, moderation, and edge sync.
//!
//! Layers, top to bottom (each imports only the ones below it):
//!
//! - [`http`]: the router ([`app`]) and its layers, the OpenAPI document.
//! - [`api`]: the API handlers; [`web`]: the HTML pages.
//! - [`auth`]: who is calling (session, API key, operator, edge, client).
//! - the domain: [`accounts`] (sign-up, verification, sign-in, sessions,
//!   passwords, consent), [`keys`], [`teams`] (and their [`storage_names`]),
//!   [`images`] (uploads, the image lifecycle, stores), [`moderation`]
//!   (operator decisions),
//!   [`operators`], [`privacy`] (deletion, export, rectification, rights
//!   requests), [`retention`] (the window of every image, the sweep),
//!   [`requestlog`] (API-key calls), [`sync`] (the edge-sync log, long-polls, edges),
//!   [`email`] (the outbox and its delivery loop).
//! - infrastructure: [`config`], [`db`], [`error`], [`json`], [`dates`],
//!   [`secrets`], [`ratelimit`] (in-memory limits keyed by a daily-rotating
//!   secret), [`client`].
//!
//! ```no_run
//! # async fn run() {
//! let cfg = imgcdn_control_plane::Config::default();
//! imgcdn_control_plane::serve(cfg, std::future::pending()).await.unwrap();
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod dates;
pub mod db;
pub mod email;
pub mod error;
pub mod http;
pub mod images;
pub mod json;
pub mod keys;
pub mod metrics;
pub mod moderation;
pub mod operators;
pub mod privacy;
pub mod ratelimit;
pub mod requestlog;
pub mod retention;
pub mod secrets;
pub mod server;
mod state;
pub mod storage_names;
pub mod sync;
pub mod teams;
pub mod web;
pub mod workers;

pub use config::Config;
pub use db::Db;
pub use server::{app, serve, ControlPlane, StartError};
pub use state::AppState;
