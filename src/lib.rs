//! Authentify platform library: custom resource types, the rollout engine, controllers and the
//! `kubectl-authentify` plugin. Everything that can be tested without a cluster lives here.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// kube's `printcolumn(...)` attributes repeat `type_ = "string"`, which this lint mistakes for a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod analysis;
pub mod api;
pub mod cli;
pub mod controllers;
pub mod providers;
pub mod rollout;
pub mod traffic;
