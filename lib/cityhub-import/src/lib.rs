//! Data that arrives as files and open-data answers, turned into NGSI-LD entities without code.
//!
//! - [`mapping`]: the declarative mapping (JSON or TOML) from a record to an entity;
//! - [`read`]: the readers (CSV, NDJSON, GeoJSON and NGSI-LD arrays streamed, XML, JSON in
//!   memory), each handing over `(line, Result<record, reason>)` and a resumable cursor;
//! - [`wkt`]: WKT geometries as GeoJSON;
//! - [`upsert`]: the modifier an imported entity is written with, which records no history for
//!   unchanged values.
//!
//! **May:** parse, map, and build modifiers (pure functions of an entity's state).
//! **Never:** I/O of its own other than reading the `Read` it is handed, network, a store call, a
//! clock other than the `now` a modifier stamps with. The `cityhub import` command and the
//! pollers (`cityhub-pollers`) do the I/O and write through `Store::modify`, the NGSI-LD API's
//! own path.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod mapping;
pub mod read;
pub mod upsert;
pub mod wkt;

pub use mapping::{Mapping, Record};
pub use read::{Cursor, Ended, Format, Item, Stop};
