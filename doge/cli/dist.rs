//! `doge dist`: the data-parallel job this process belongs to.

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct DistArgs {
    #[command(subcommand)]
    pub command: DistCommand,
}

#[derive(Subcommand, Debug)]
pub enum DistCommand {
    /// Join the MPI job (`mpirun -n N doge dist check`), all-reduce and broadcast across it, and
    /// print one line per rank: checks the MPI build, the launcher and the network before a run.
    Check {
        /// Also all-reduce on a CUDA device through NCCL: `cuda` (each rank its local rank's GPU) or `cuda:N`
        #[arg(long)]
        device: Option<String>,
    },
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    match &args.command {
        DistCommand::Check { device } => {
            let line = crate::dist::check().and_then(|line| match device {
                None => Ok(line),
                Some(d) => Ok(format!("{line}; {}", nccl_check(d)?)),
            });
            crate::dist::finalize();
            println!("{}", line?);
            Ok(())
        }
    }
}

#[cfg(feature = "cuda")]
fn nccl_check(device: &str) -> anyhow::Result<String> {
    // `cuda` alone: the GPU of this rank's place on its machine, as training picks it.
    let device = match device {
        "cuda" => format!("cuda:{}", crate::dist::world().local_rank),
        d => d.to_string(),
    };
    crate::dist::nccl::check(&super::io::parse_device(&device)?)
}

#[cfg(not(feature = "cuda"))]
fn nccl_check(device: &str) -> anyhow::Result<String> {
    anyhow::bail!("--device {device}: this doge was built without CUDA (`--features cuda`)")
}
