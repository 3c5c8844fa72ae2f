//! cairn benchmarks live in benches/.
