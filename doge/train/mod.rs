//! Training: the optimizer, learning-rate schedules, checkpoints with exact resume, and the loop.

pub mod data_bridge;
pub mod dpo;
pub mod launcher;
pub mod mfu;
pub mod optimizer;
pub mod pretrain;
pub mod rows;
pub mod runner;
pub mod schedule;
pub mod sft;
pub mod state;
pub mod trainer;
