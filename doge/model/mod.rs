//! The Doge architecture (transformers' `DogeForCausalLM`, spec variant A) and its configuration.

pub mod autocast;
pub mod config;
pub mod presets;

pub use config::DogeConfig;
pub use presets::{preset, Preset, PRESETS};
pub mod doge;
pub mod flops;
pub mod masks;
pub mod ops;
pub mod params;
pub mod routing;

pub use doge::{causal_lm_loss, DogeForCausalLM, KvCache};
