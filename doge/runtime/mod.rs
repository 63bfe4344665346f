//! Process-wide CPU runtime settings for the `doge` binary: a caching allocator for large tensor
//! buffers, and candle's thread-pool spin limit (`crate::model::ops::configure_cpu_threads`).

pub mod alloc;
