//! doge: train, fine-tune, evaluate and compare Doge small language models on candle.

pub mod bench;
pub mod checkpoint;
pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod dist;
pub mod eval;
pub mod experiment;
pub mod generate;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod score;
pub mod train;
pub mod ui;
