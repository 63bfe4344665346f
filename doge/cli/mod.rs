//! The `doge` subcommands that work on a model directory, and `doge dist`.

pub mod chat;
pub mod convert;
pub mod cuda;
pub mod dist;
pub mod generate;
pub mod io;
pub mod score;
