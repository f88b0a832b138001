//! Shared helpers for the wasm test suites (see `tests/`).
