//! Fakes of the outside HTTP APIs the operator calls, for tests and the local environment. Every
//! request they receive and every response they send is checked against the vendors' official
//! OpenAPI schemas in `../shared/specs`.
//!
//! This crate decides what a fake answers and whether an exchange is one the vendor defines; it
//! never relaxes a schema silently (each correction is a documented [`openapi::Erratum`]) and never
//! serves anything but loopback addresses unless told to.

pub mod atlas;
pub mod cloudflare;
pub mod openapi;
mod server;

pub use atlas::AtlasFake;
pub use cloudflare::CloudflareFake;
pub use server::Fault;
