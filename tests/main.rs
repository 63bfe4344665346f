//! All integration tests, linked into one binary: each `tests/*.rs` module used to be its own
//! 130 MB executable, and 34 of them filled CI's disk and spent minutes linking. Run one file's
//! tests with a module filter: `cargo test --release --test suite model_reference::`.

mod data_support;
mod dist_support;
mod reference_support;
mod registry_support;
mod sweep_support;

mod autocast_bf16;
mod bench_cli;
mod chat_cli;
mod checkpoint_io;
mod cli_commands;
mod data_cli;
mod data_errors;
mod data_mix;
mod data_scale;
mod data_shards;
mod data_sources;
mod data_tokenizer;
mod dist_mpi;
mod dist_train;
mod eval_cli;
mod eval_prompts;
mod eval_reference;
mod eval_taskfiles;
mod experiment_errors;
mod experiment_presets;
mod experiment_resolve;
mod experiment_schema;
mod hub_download;
mod model_properties;
mod model_reference;
mod ops_fused;
mod registry_concurrency;
mod registry_filter;
mod registry_housekeeping;
mod registry_merge;
mod registry_migrate;
mod registry_report;
mod registry_scale;
mod registry_show_compare;
mod run_records;
mod smalldoge_layouts;
mod sweep_claims;
mod sweep_postgres;
mod sweep_slurm;
mod tokenizer_text_input;
mod train_dpo;
mod train_loop;
mod train_run;
mod train_sft;
mod transformers_interop;
mod ui_dashboard;
