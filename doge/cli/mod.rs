//! The `doge` subcommands that work on a model directory.

pub mod convert;
pub mod generate;
pub mod io;
pub mod score;
