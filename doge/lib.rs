//! doge: train, fine-tune, evaluate and compare Doge small language models on candle.

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod experiment;
pub mod generate;
pub mod model;
pub mod registry;
pub mod score;
pub mod train;
