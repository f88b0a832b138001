//! The JS API (wasm-bindgen).
