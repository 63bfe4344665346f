//! Each task's prompt format against strings written by hand from the harnesses' definitions
//! (lighteval's default prompts, small-doge's MMLU cloze prompt, lm-eval's Winogrande partial
//! scoring), for two rows each of tests/fixtures/eval/rows (copied from the official splits;
//! Winogrande and TriviaQA rows are hand-written in the hub's row format).

use std::path::{Path, PathBuf};

use doge::eval::loader::{read_rows, Row};
use doge::eval::multiple_choice::{prompt, McDoc};
use doge::eval::tasks::{self, triviaqa};

fn rows(rel: &str) -> Vec<Row> {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval/rows")
        .join(rel);
    read_rows(&p).unwrap()
}

fn docs(rel: &str, f: fn(&Row) -> anyhow::Result<McDoc>) -> Vec<McDoc> {
    rows(rel).iter().map(|r| f(r).unwrap()).collect()
}

/// Zero-shot prompt of choice 0, every continuation, and the gold index.
fn zero_shot(d: &McDoc) -> (String, Vec<&str>, usize) {
    (
        prompt(d, &[], 0),
        d.choices.iter().map(String::as_str).collect(),
        d.gold,
    )
}

#[test]
fn hellaswag() {
    let d = docs("hellaswag/validation.jsonl", tasks::hellaswag::doc);
    assert_eq!(
        zero_shot(&d[0]),
        (
            "High jump: A boy is running down a track. The boy ".to_string(),
            vec![
                "runs into a car.",
                "gets in a mat.",
                "lifts his body above the height of a pole.",
                "stands on his hands and springs."
            ],
            2
        )
    );
    // WikiHow: `[title]` becomes ". ", other brackets go, double spaces collapse; empty ctx_b.
    let (p, choices, gold) = zero_shot(&d[2]);
    assert_eq!(
        p,
        "Food and Entertaining: How to caulk walls. Clean the wall. Caulk should never go on a \
         dirty surface. Wipe down the wall with a dry cloth to remove dust. "
    );
    assert_eq!(
        choices[3],
        "Wash with an all-purpose cleaner to remove grease and dirt. Rubbing alcohol and a wire \
         brush will remove stubborn stains."
    );
    assert_eq!(gold, 3);
}

#[test]
fn arc() {
    let d = docs("arc_easy/validation.jsonl", tasks::arc::doc);
    assert_eq!(
        zero_shot(&d[0]),
        (
            "Question: Clouds and fog are made up of\nAnswer:".to_string(),
            vec![" water.", " heat.", " light.", " helium."],
            0
        )
    );
    assert_eq!(
        zero_shot(&d[1]),
        (
            "Question: Which plant part absorbs minerals?\nAnswer:".to_string(),
            vec![" leaf", " root", " fruit", " flower"],
            1
        )
    );
    let c = docs("arc_challenge/validation.jsonl", tasks::arc::doc);
    assert_eq!(c[1].gold, 3);
    // acc_norm divides by the answer text without the delimiter space.
    assert_eq!(c[1].answers, vec!["cork", "water", "air", "steel"]);
}

#[test]
fn piqa() {
    let d = docs("piqa/validation.jsonl", tasks::piqa::doc);
    // The solutions' own trailing spaces are kept, as the harnesses keep them.
    assert_eq!(
        zero_shot(&d[0]),
        (
            "Question: laser\nAnswer:".to_string(),
            vec![" burns face ", " burns air "],
            0
        )
    );
    assert_eq!(
        zero_shot(&d[1]),
        (
            "Question: fist\nAnswer:".to_string(),
            vec![" grips house ", " grips spoon "],
            1
        )
    );
}

#[test]
fn boolq() {
    let d = docs("boolq/validation.jsonl", tasks::boolq::doc);
    assert_eq!(
        zero_shot(&d[0]),
        (
            "The season is set for release in 2019.\nQuestion: are they going to make a punisher \
             season 2?\nAnswer:"
                .to_string(),
            vec![" no", " yes"],
            1
        )
    );
    assert_eq!(
        zero_shot(&d[1]).0,
        "A sequel, Allegiant, was released on March 18, 2016.\nQuestion: is there going to be \
         another insurgent movie?\nAnswer:"
    );
}

#[test]
fn openbookqa() {
    let d = docs("openbookqa/validation.jsonl", tasks::openbookqa::doc);
    assert_eq!(
        zero_shot(&d[0]),
        (
            "What creates a valley?".to_string(),
            vec![" feet", " rock", " water", " sand"],
            2
        )
    );
    assert_eq!(
        zero_shot(&d[1]),
        (
            "Where did Puppigerus live?".to_string(),
            vec![" bog", " ocean", " land", " marsh"],
            1
        )
    );
}

#[test]
fn mmlu_cloze_with_examples_from_dev() {
    let test = docs("mmlu/test/astronomy.jsonl", tasks::mmlu::doc);
    let dev = docs("mmlu/dev/astronomy.jsonl", tasks::mmlu::doc);
    assert_eq!(
        zero_shot(&test[0]),
        (
            "The following are questions about astronomy.\nQuestion: When was the telescope \
             invented by Galileo?\nAnswer:"
                .to_string(),
            vec![" 1409", " 1509", " 1609", " 1709"],
            2
        )
    );
    // The subject line once, then each example's question and gold answer.
    assert_eq!(
        prompt(&test[1], &[&dev[0]], 0),
        "The following are questions about astronomy.\nQuestion: You are pushing a truck along a \
         road. Would it be easier to accelerate this truck on Mars? Why? (Assume there is no \
         friction)\nAnswer: It would be the same no matter where you are.\n\nQuestion: A Mars \
         year is approximately how many Earth years long?\nAnswer:"
    );
    assert_eq!(test[1].group.as_deref(), Some("astronomy"));
}

#[test]
fn winogrande_partial_scoring() {
    let d = docs("winogrande/validation.jsonl", tasks::winogrande::doc);
    assert_eq!(
        (prompt(&d[0], &[], 0), prompt(&d[0], &[], 1)),
        (
            "Sarah was a much better surgeon than Maria so Sarah".to_string(),
            "Sarah was a much better surgeon than Maria so Maria".to_string()
        )
    );
    assert_eq!(d[0].choices, vec![" always got the harder cases."; 2]);
    assert_eq!(d[0].gold, 0);
    assert_eq!(
        prompt(&d[1], &[], 1),
        "The trophy doesn't fit into the brown suitcase because the suitcase"
    );
    assert_eq!(d[1].choices[0], " is too large.");
    // As a few-shot example it reads as the whole sentence.
    assert_eq!(
        d[1].example(),
        "The trophy doesn't fit into the brown suitcase because the trophy is too large."
    );
}

#[test]
fn triviaqa() {
    let d: Vec<_> = rows("triviaqa/validation.jsonl")
        .iter()
        .map(|r| triviaqa::doc(r).unwrap())
        .collect();
    assert_eq!(
        d[0].context,
        "Question: Which planet is known as the Red Planet?\nAnswer:"
    );
    assert_eq!(d[0].golds, vec!["mars", "the red planet"]);
    assert_eq!(d[1].golds, vec!["city of light", "paris"]);
    assert_eq!(
        triviaqa::prompt(&d[0], &[&d[1]]),
        "Question: What is the capital city of France?\nAnswer: Paris\n\nQuestion: Which planet \
         is known as the Red Planet?\nAnswer:"
    );
}
