//! End-to-end tests: the real `cairn` binary against real repositories on the local disk.
//! One test binary with one module per area.

mod support;

mod backup_options;
mod check;
mod crash;
mod damage;
mod dedup;
mod durability;
mod errors;
mod hostile;
mod interrupt;
mod operations;
mod passwords;
mod restic_parity;
mod restore_safety;
mod retention;
mod roundtrip;
mod smoke;
mod streams;
mod terminal;
