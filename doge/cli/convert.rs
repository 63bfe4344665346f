//! `doge convert`: re-save a loadable checkpoint in transformers' layout, optionally in another dtype.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use clap::Args;

use crate::checkpoint::{parse_dtype, Checkpoint, COMPANION_FILES};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Model directory to read, or a hub id (`owner/name[@revision]`).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory to write (created; must not be the input).
    #[arg(long)]
    pub out: PathBuf,
    /// Dtype of the saved tensors: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let dtype = parse_dtype(&args.dtype)
        .ok_or_else(|| anyhow!("--dtype {}: expected f32, bf16 or f16", args.dtype))?;
    if args.out.exists() && args.out.canonicalize()? == args.model.canonicalize()? {
        bail!(
            "--out {} is the input directory; write the conversion somewhere else",
            args.out.display()
        );
    }
    // Tensors are read in their own dtype widened to f32 and cast once on save.
    let ckpt = Checkpoint::load(&args.model, candle_core::DType::F32, &Device::Cpu)?;
    ckpt.save(&args.out, dtype)?;
    for name in COMPANION_FILES {
        let src = args.model.join(name);
        if src.exists() {
            std::fs::copy(&src, args.out.join(name))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    eprintln!(
        "wrote {} ({} parameters, {})",
        args.out.display(),
        ckpt.config.num_parameters(),
        crate::checkpoint::dtype_name(dtype)
    );
    Ok(())
}
