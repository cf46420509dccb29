//! See `tests/compiletest.rs`.
