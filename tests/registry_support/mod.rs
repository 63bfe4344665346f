//! Shared by the registry tests: seeding runs with configs, metrics and evals.
#![allow(dead_code)]

use doge::registry::{EvalRow, NewRun, Registry, RunStatus};

/// A run of a small sweep: pretrain lr and seed vary; loss falls with steps.
pub struct Seed<'a> {
    pub id: &'a str,
    pub sweep: Option<&'a str>,
    pub parent: Option<&'a str>,
    pub stage: &'a str,
    pub lr: f64,
    pub seed: u64,
    pub status: RunStatus,
    pub steps: u64,
    pub final_loss: f64,
    pub hellaswag: Option<f64>,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            id: "run",
            sweep: None,
            parent: None,
            stage: "pretrain",
            lr: 3e-3,
            seed: 233,
            status: RunStatus::Done,
            steps: 10,
            final_loss: 3.0,
            hellaswag: None,
        }
    }
}

pub fn config(lr: f64, seed: u64) -> String {
    format!(
        r#"{{"seed":{seed},"model":{{"hidden-size":256,"layers":4}},"stage":[{{"kind":"pretrain","lr":{lr}}},{{"kind":"sft","name":"chat","lr":0.0001}}]}}"#
    )
}

pub fn add(reg: &mut Registry, s: &Seed) {
    reg.start_run(&NewRun {
        id: s.id.into(),
        experiment: "exp".into(),
        experiment_path: None,
        sweep: s.sweep.map(Into::into),
        parent_id: s.parent.map(Into::into),
        stage: s.stage.into(),
        config_json: config(s.lr, s.seed),
        config_hash: s.id.into(),
        device: "cpu".into(),
    })
    .unwrap();
    let rows: Vec<(u64, &str, f64)> = (1..=s.steps)
        .flat_map(|step| {
            let loss = s.final_loss + (s.steps - step) as f64 * 0.1;
            [(step, "loss", loss), (step, "lr", s.lr)]
        })
        .collect();
    reg.log_metrics(s.id, &rows).unwrap();
    if let Some(acc) = s.hellaswag {
        reg.add_eval(
            s.id,
            &EvalRow {
                task: "hellaswag".into(),
                metric: "acc_norm".into(),
                value: acc,
                stderr: Some(0.01),
                n: Some(100),
                fewshot: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    }
    if s.status != RunStatus::Running {
        reg.finish_run(s.id, s.status, None).unwrap();
    }
}
