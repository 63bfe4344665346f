//! The Doge architecture and its configuration: transformers' `DogeForCausalLM` (spec variant A)
//! and the SmallDoge remote-code layouts (B, C), one model with the layout as data in the config.

pub mod autocast;
pub mod config;
pub mod presets;

pub use config::{DogeConfig, Layout};
pub use presets::{preset, Preset, PRESETS};
pub mod doge;
pub mod flops;
pub mod masks;
pub mod ops;
pub mod params;
pub mod routing;

pub use doge::{causal_lm_loss, DogeForCausalLM, KvCache};
