//! `doge bench`: training-step and generation throughput on a preset's shape with random weights,
//! the numbers `bench/compare.py` sets beside PyTorch's.

pub mod cli;
pub mod generate;
pub mod stats;
pub mod train;

pub use generate::{bench_generate, GenerateBench, GenerateBenchSettings};
pub use stats::{peak_rss_bytes, Timings};
pub use train::{bench_train, TrainBench, TrainBenchSettings};
