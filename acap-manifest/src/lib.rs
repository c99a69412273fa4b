//! Earshot's ACAP package: the description AXIS OS reads and the tool that writes and checks it.
//!
//! An ACAP app is installed from an `.eap` file: a gzip-compressed tar holding the executable
//! (named after `appName`), `manifest.json`, the `package.conf`/`param.conf` pair that firmware
//! older than the manifest reads, `LICENSE` and the settings page under `html/`
//! (`../shared/handbook/acap-platform.md`, "The .eap package"). This crate holds each of them as typed data or a generator:
//!
//! - [`manifest`]: `manifest.json` (schema 1.7.1) with Earshot's fields (app parameters,
//!   settings page, reverse proxy to `earshot run --http`) and a validator that reports every
//!   problem by JSON path;
//! - [`conf`]: `package.conf`/`param.conf` generation, a parser for their `KEY="value"` lines and
//!   an agreement check against a manifest;
//! - [`licenses`]: the `LICENSE` file (Earshot, the YAMNet model, every linked crate);
//! - [`html`]: the settings page under `html/` (the workspace's `src/web/page/`);
//! - [`eap`]: reproducible packing and unpacking of the `.eap`;
//! - [`check`]: the checks a finished package must pass (entries, ELF class and machine, newest
//!   GLIBC symbol version, manifest, settings page, confs, licence text).
//!
//! The `earshot-acap` binary (`package`, `manifest`, `check`) drives them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod conf;
pub mod eap;
pub mod html;
pub mod licenses;
pub mod manifest;

pub use manifest::{Arch, Manifest};
