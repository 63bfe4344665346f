//! doge: train, fine-tune, evaluate and compare Doge small language models on candle.

pub mod checkpoint;
pub mod cli;
pub mod experiment;
pub mod generate;
pub mod model;
pub mod score;
