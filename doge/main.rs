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
    /// Experiments: run a KDL experiment file, check it, plan its sweep.
    Exp(doge::experiment::cli::ExpArgs),
    /// Data: prepare an experiment's tokens, benchmark tokenization, train a tokenizer.
    Data(doge::data::cli::DataArgs),
    /// The run registry: list, show and compare runs (`--where`, `--sort`, `--format`).
    Runs(doge::registry::cli::RunsArgs),
    /// A Markdown + self-contained HTML report: tables, loss/lr curves, eval bars, leaderboard.
    Report(doge::registry::cli::ReportArgs),
    /// Registry maintenance: merge another machine's registry file.
    Registry(doge::registry::cli::RegistryArgs),
    /// Print the JSON Schema of experiment files (schemas/experiment.schema.json).
    Schema,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            // 130 = terminated by Ctrl-C, as shells report it.
            match e.downcast_ref::<doge::train::runner::Interrupted>() {
                Some(_) => ExitCode::from(130),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn run(parsed: Cli) -> anyhow::Result<()> {
    match parsed.command {
        Command::Score(args) => cli::score::run(&args),
        Command::Generate(args) => cli::generate::run(&args),
        Command::Convert(args) => cli::convert::run(&args),
        Command::Exp(args) => doge::experiment::cli::run(&args),
        Command::Data(args) => doge::data::cli::run(&args),
        Command::Runs(args) => doge::registry::cli::run_runs(&args),
        Command::Report(args) => doge::registry::cli::run_report(&args),
        Command::Registry(args) => doge::registry::cli::run_registry(&args),
        Command::Schema => {
            doge::experiment::cli::print_schema();
            Ok(())
        }
    }
}
