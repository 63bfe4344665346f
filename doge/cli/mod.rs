//! The `doge` subcommands that work on a model directory.

pub mod chat;
pub mod convert;
pub mod cuda;
pub mod generate;
pub mod io;
pub mod score;
