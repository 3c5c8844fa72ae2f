//! End-to-end tests: the real `cairn` binary against real repositories on the local disk.
//! One test binary with one module per area.

mod support;

mod check;
mod damage;
mod restic_parity;
mod retention;
mod roundtrip;
mod smoke;
