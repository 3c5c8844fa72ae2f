//! End-to-end tests: the real `cairn` binary against real repositories on the local disk.
//! One test binary with one module per area.

mod support;

mod backup_input;
mod backup_options;
mod browse;
mod cache_storage;
mod check;
mod crash;
mod crash_points;
mod damage;
mod dedup;
mod deletion_safety;
mod durability;
mod errors;
mod hostile;
mod interrupt;
mod mount;
mod operations;
mod passwords;
mod restic_parity;
mod restore_safety;
mod retention;
mod roundtrip;
mod s3;
mod smoke;
mod streams;
mod terminal;
mod xattrs;
