//! Clients for services outside the cluster (MongoDB Atlas, Cloudflare), behind traits so that
//! controllers can be tested with fakes.
//!
//! This module decides how the operator talks to those services (authentication, retries, rate
//! limits, error messages); it never decides what should exist there, which is the controllers'
//! job, and it never lets a credential reach a log, an error or a `Debug` string.

pub mod atlas;
pub mod cloudflare;
pub mod http;
pub mod redis;
pub mod webhook;
