//! `doge cuda`: doge's own CUDA kernels: compile them with NVRTC (no GPU needed) or check them
//! against the composed candle ops on a GPU.

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct CudaArgs {
    #[command(subcommand)]
    pub command: CudaCommand,
}

#[derive(Subcommand, Debug)]
pub enum CudaCommand {
    /// Compile the kernels to PTX with NVRTC and list them (needs libnvrtc, not a GPU).
    Kernels {
        /// Target compute capability.
        #[arg(long, default_value = "sm_90")]
        arch: String,
    },
    /// Run every fused kernel against the composed candle ops on a GPU; exit 1 on a mismatch.
    Selftest {
        #[arg(long, default_value = "cuda:0")]
        device: String,
    },
}

#[cfg(not(feature = "cuda"))]
pub fn run(_: &CudaArgs) -> Result<()> {
    anyhow::bail!(
        "this doge was built without CUDA; rebuild with `source .ci/cuda-env.sh && cargo build \
         --release --features cuda`"
    )
}

#[cfg(feature = "cuda")]
pub fn run(args: &CudaArgs) -> Result<()> {
    match &args.command {
        CudaCommand::Kernels { arch } => {
            let arch: &'static str = Box::leak(arch.clone().into_boxed_str());
            let ptx = crate::cuda::compile_ptx(arch)?;
            for name in crate::cuda::KERNELS {
                let found = ptx.contains(&format!(".entry {name}("));
                anyhow::ensure!(found, "kernel {name} is missing from the PTX");
                println!("{name}: ok");
            }
            println!(
                "{} kernels, {} bytes of PTX for {arch}",
                crate::cuda::KERNELS.len(),
                ptx.len()
            );
            Ok(())
        }
        CudaCommand::Selftest { device } => {
            let dev = super::io::parse_device(device)?;
            let checks = crate::cuda::selftest::run(&dev)?;
            let mut failed = 0;
            for c in &checks {
                let verdict = if c.passed() { "ok" } else { "FAILED" };
                println!(
                    "{:<28} max |diff| {:.3e} (tolerance {:.0e}) {verdict}",
                    c.name, c.max_abs_diff, c.tolerance
                );
                failed += (!c.passed()) as usize;
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} of {} kernel checks failed",
                checks.len()
            );
            Ok(())
        }
    }
}
