//! End-to-end tests: the real `cairn` binary against real repositories on the local disk.
//! One test binary with one module per area.

mod support;

mod backup_input;
mod backup_options;
mod browse;
mod cache_storage;
mod check;
mod check_index_conflicts;
mod cli_compat;
mod compressed_input;
mod copy;
mod crash;
mod crash_points;
mod damage;
mod dedup;
mod deletion_safety;
mod durability;
mod errors;
mod gen_repo;
mod hostile;
mod interrupt;
mod mount;
mod mount_live;
mod mount_pg;
mod mount_read_ahead;
mod operations;
mod passwords;
mod pg;
mod profiles;
mod profiles_pg;
mod redis;
mod restic_parity;
mod restore_safety;
mod restore_small_files;
mod retention;
mod roundtrip;
mod s3;
mod s3_reads;
mod smoke;
mod stream_cuts;
mod streams;
mod terminal;
mod xattrs;
