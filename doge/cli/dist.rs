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
    Check,
}

pub fn run(args: &DistArgs) -> anyhow::Result<()> {
    match args.command {
        DistCommand::Check => {
            let line = crate::dist::check();
            crate::dist::finalize();
            println!("{}", line?);
            Ok(())
        }
    }
}
