use clap::{Parser, Subcommand};

/// Train, fine-tune, evaluate and compare Doge small language models.
#[derive(Parser)]
#[command(name = "doge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
