//! End-to-end tests: the real `cairn` binary against real repositories on the local disk.
//! One test binary with one module per area.

mod support;

mod backup_options;
mod check;
mod crash;
mod damage;
mod dedup;
mod deletion_safety;
mod durability;
mod errors;
mod interrupt;
mod passwords;
mod restic_parity;
mod retention;
mod roundtrip;
mod smoke;
mod streams;
mod terminal;
