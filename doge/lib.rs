//! doge: train, fine-tune, evaluate and compare Doge small language models on candle.

pub mod checkpoint;
pub mod generate;
pub mod model;
