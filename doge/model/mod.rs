//! The Doge architecture (transformers' `DogeForCausalLM`, spec variant A) and its configuration.

pub mod config;
pub mod presets;

pub use config::DogeConfig;
pub use presets::{preset, Preset, PRESETS};
pub mod doge;
pub mod masks;
pub mod params;
pub mod routing;

pub use doge::{causal_lm_loss, DogeForCausalLM, KvCache};
