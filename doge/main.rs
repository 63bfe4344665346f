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
    /// Chat with a model through its chat template (stdin lines in, streamed replies out).
    Chat(cli::chat::ChatArgs),
    /// Re-save a checkpoint in the Hugging Face layout (optionally as bf16/f16).
    Convert(cli::convert::ConvertArgs),
    /// Benchmarks (hellaswag, arc, piqa, mmlu, winogrande, triviaqa, ...) and perplexity.
    Eval(doge::eval::cli::EvalArgs),
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
    /// A local web dashboard over the registry: runs table, live curves, compare, evals.
    Ui(doge::ui::UiArgs),
    /// Print the JSON Schema of experiment files (schemas/experiment.schema.json).
    Schema,
    /// doge's CUDA kernels: compile them with NVRTC, or check them against candle on a GPU.
    Cuda(cli::cuda::CudaArgs),
    /// The data-parallel job: `mpirun -n N doge dist check` tests MPI before a run.
    Dist(cli::dist::DistArgs),
    /// Throughput: training steps and generation on a preset's shape (see bench/compare.py).
    Bench(doge::bench::cli::BenchArgs),
}

/// Large freed tensor buffers are reused instead of returned to the kernel (doge/runtime/alloc.rs).
#[global_allocator]
static ALLOC: doge::runtime::alloc::CachingAlloc = doge::runtime::alloc::CachingAlloc::new();

fn main() -> ExitCode {
    doge::model::ops::configure_cpu_threads();
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
        Command::Score(mut args) => {
            args.model.resolve()?;
            cli::score::run(&args)
        }
        Command::Generate(mut args) => {
            args.model.resolve()?;
            cli::generate::run(&args)
        }
        Command::Chat(mut args) => {
            args.model.resolve()?;
            cli::chat::run(&args)
        }
        Command::Convert(mut args) => {
            args.model =
                doge::data::hub::model_dir(&args.model, &doge::data::hub::HubOptions::from_env())?;
            cli::convert::run(&args)
        }
        Command::Eval(mut args) => {
            args.model.resolve()?;
            doge::eval::cli::run(&args)
        }
        Command::Exp(args) => doge::experiment::cli::run(&args),
        Command::Data(args) => doge::data::cli::run(&args),
        Command::Runs(args) => doge::registry::cli::run_runs(&args),
        Command::Report(args) => doge::registry::cli::run_report(&args),
        Command::Registry(args) => doge::registry::cli::run_registry(&args),
        Command::Ui(args) => doge::ui::run(&args),
        Command::Cuda(args) => cli::cuda::run(&args),
        Command::Bench(args) => doge::bench::cli::run(&args),
        Command::Dist(args) => cli::dist::run(&args),
        Command::Schema => {
            doge::experiment::cli::print_schema();
            Ok(())
        }
    }
}
