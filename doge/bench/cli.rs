//! `doge bench train|generate|config`: throughput on a preset's shape, printed for people or as one
//! JSON line for `bench/compare.py`.

use anyhow::{anyhow, Result};
use candle_core::DType;
use clap::{Args, Subcommand};

use super::{bench_generate, bench_train, GenerateBenchSettings, Timings, TrainBenchSettings};
use crate::cli::io::parse_device;
use crate::model::presets::preset_names;
use crate::model::{preset, DogeConfig};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Training steps (forward, backward, clip, AdamW) on random tokens: tokens/s, step times, peak RSS.
    Train(TrainArgs),
    /// Greedy KV-cache generation from a random prompt: new tokens/s (prompt included), peak RSS.
    Generate(GenerateArgs),
    /// Print a preset's config.json (what the PyTorch side of bench/compare.py builds).
    Config(PresetArgs),
}

#[derive(Args, Debug)]
pub struct PresetArgs {
    /// A model size: doge-tiny, doge-20m, doge-60m, ... (case-insensitive).
    #[arg(long, default_value = "doge-20m")]
    pub preset: String,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Matmul precision: f32, or bf16 autocast (float32 weights and optimizer state).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::experiment::Precision,
    /// Peak TFLOP/s for MFU (default: the datasheet number for the GPU's name; none on CPUs).
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, default_value_t = 32)]
    pub prompt_len: usize,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed generations.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

fn preset_config(args: &PresetArgs) -> Result<DogeConfig> {
    preset(&args.preset).map(|p| p.config()).ok_or_else(|| {
        anyhow!(
            "--preset {}: unknown; expected one of {}",
            args.preset,
            preset_names().join(", ")
        )
    })
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::Config(p) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&preset_config(p)?.to_json())?
            );
        }
        BenchCommand::Train(a) => {
            let cfg = preset_config(&a.common.preset)?;
            anyhow::ensure!(a.steps > 0, "--steps must be at least 1");
            anyhow::ensure!(
                a.seq >= 2,
                "--seq must be at least 2 (the loss predicts the next token)"
            );
            let dev = parse_device(&a.common.device)?;
            let s = TrainBenchSettings {
                batch: a.batch,
                seq: a.seq,
                steps: a.steps,
                warmup: a.warmup,
                seed: a.common.seed,
            };
            let _autocast = crate::model::autocast::enable(a.precision.matmul_dtype());
            let mut r = bench_train(&cfg, &s, &dev)?;
            r.flops_per_token = crate::model::flops::train_flops_per_token(&cfg, a.seq);
            let matmul = a.precision.matmul_dtype().unwrap_or(DType::F32);
            let peak = match a.peak_tflops {
                Some(t) => Some(t * 1e12),
                None => crate::train::mfu::device_name(&dev)
                    .and_then(|n| crate::train::mfu::peak_flops(&n, matmul)),
            };
            r.mfu = peak.map(|p| r.tokens_per_s * r.flops_per_token / p);
            if a.common.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "train {} batch {} seq {} on {} ({} rayon threads): {:.0} tokens/s, step min {:.1} ms, median {:.1} ms, peak RSS {}, loss {:.4}",
                    a.common.preset.preset,
                    a.batch,
                    a.seq,
                    a.common.device,
                    rayon::current_num_threads(),
                    r.tokens_per_s,
                    r.step_seconds.min() * 1e3,
                    r.step_seconds.median() * 1e3,
                    mib(r.peak_rss_bytes),
                    r.final_loss
                );
                let phase = |i: usize| Timings {
                    seconds: r.phases.iter().map(|p| p[i]).collect(),
                };
                println!(
                    "  median phases: forward + loss {:.1} ms, backward {:.1} ms, clip + AdamW {:.1} ms; CPU time {:.2} s/step",
                    phase(0).median() * 1e3,
                    phase(1).median() * 1e3,
                    phase(2).median() * 1e3,
                    r.cpu_seconds_per_step.unwrap_or(f64::NAN)
                );
                if let Some(mfu) = r.mfu {
                    println!(
                        "  MFU {:.1}% ({:.3e} FLOPs/token, {:?} matmuls)",
                        100.0 * mfu,
                        r.flops_per_token,
                        a.precision
                    );
                }
            }
        }
        BenchCommand::Generate(a) => {
            let cfg = preset_config(&a.common.preset)?;
            anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
            anyhow::ensure!(a.prompt_len > 0, "--prompt-len must be at least 1");
            let dev = parse_device(&a.common.device)?;
            let s = GenerateBenchSettings {
                prompt_len: a.prompt_len,
                new_tokens: a.new_tokens,
                runs: a.runs,
                warmup: a.warmup,
                seed: a.common.seed,
            };
            let r = bench_generate(&cfg, &s, &dev)?;
            if a.common.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "generate {} prompt {} + {} new tokens on {}: {:.1} new tokens/s, run min {:.1} ms, median {:.1} ms, peak RSS {}",
                    a.common.preset.preset,
                    a.prompt_len,
                    a.new_tokens,
                    a.common.device,
                    r.tokens_per_s,
                    r.run_seconds.min() * 1e3,
                    r.run_seconds.median() * 1e3,
                    mib(r.peak_rss_bytes)
                );
            }
        }
    }
    Ok(())
}
