use clap::{Parser, Subcommand};
use doge::cli;
use std::process::ExitCode;

/// Train, fine-tune, evaluate and compare Doge small language models.
#[derive(Parser)]
#[command(name = "doge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mean next-token negative log-likelihood of each JSONL record.
    Score(cli::score::ScoreArgs),
    /// Generate continuations with a KV cache (greedy or sampled).
    Generate(cli::generate::GenerateArgs),
    /// Re-save a checkpoint in the Hugging Face layout (optionally as bf16/f16).
    Convert(cli::convert::ConvertArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(parsed: Cli) -> anyhow::Result<()> {
    match parsed.command {
        Command::Score(args) => cli::score::run(&args),
        Command::Generate(args) => cli::generate::run(&args),
        Command::Convert(args) => cli::convert::run(&args),
    }
}
