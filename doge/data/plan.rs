//! The streaming mix planner: the held-out split and each source's share of the training mix,
//! computed from the stored pieces' document records in a few sequential passes, with memory
//! that does not grow with the corpus (the test documents, and per source a histogram of
//! 65,536 key ranges).
//!
//! A source's documents are ordered by their [`MixKeys::order`] key. The `test` smallest are
//! held out; training documents whose content equals a held-out one are dropped; the rest are
//! taken in key order until the source's budget is met, cycling when it asks for more than the
//! source has (whole passes, then a prefix of the key order). The prefix ends where a running
//! total first passes the target, which the histogram locates to one key range and a sort of
//! that range alone settles exactly.

use std::collections::{BinaryHeap, HashSet};

use anyhow::{bail, Result};

use super::config::Budget;
use super::mix::{share_out, test_counts, MixKeys};
use super::pieces::{DocRecord, PieceIndex};

const RANGES: usize = 1 << 16;

fn range_of(key: u64) -> usize {
    (key >> 48) as usize
}

/// A held-out document.
#[derive(Debug, Clone, Copy)]
pub struct TestDoc {
    pub j: u64,
    pub piece: u32,
    pub rec: DocRecord,
}

/// One source's part of the plan.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub documents: u64,
    pub test: Vec<TestDoc>,
    test_js: HashSet<u64>,
    /// Distinct training documents and their tokens (one pass over the source).
    pub unique_docs: u64,
    pub unique_tokens: u64,
    /// Whole passes over the training documents.
    passes: u64,
    /// Then the training documents of key range below this, and in this range up to and
    /// including the (key, index) given.
    prefix: Option<(usize, Option<(u64, u64)>)>,
    /// Training documents and tokens in the mix, repeats counted.
    pub picked_docs: u64,
    pub picked_tokens: u64,
}

impl SourcePlan {
    /// How many times document `j` (with order key `key`) goes into the training mix.
    pub fn copies(&self, held: &HashSet<u64>, j: u64, key: u64, rec: &DocRecord) -> u64 {
        if self.test_js.contains(&j) || held.contains(&rec.content) {
            return 0;
        }
        let in_prefix = self.prefix.is_some_and(|(range, last)| {
            let r = range_of(key);
            r < range || (r == range && last.is_some_and(|l| (key, j) <= l))
        });
        self.passes + in_prefix as u64
    }
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sources: Vec<SourcePlan>,
    /// Content hashes of the held-out documents.
    pub held: HashSet<u64>,
}

impl Plan {
    pub fn train_entries(&self) -> u64 {
        self.sources.iter().map(|s| s.picked_docs).sum()
    }

    pub fn train_tokens(&self) -> u64 {
        self.sources.iter().map(|s| s.picked_tokens).sum()
    }
}

/// What is left of a source's budget after its whole passes.
enum Rest {
    Tokens(f64),
    Docs(u64),
}

/// Plans the mix over `index`'s documents (`docs[s]` of them in source `s`).
pub fn plan(
    index: &PieceIndex,
    docs: &[u64],
    weights: &[f64],
    n_test: usize,
    budget: Budget,
    keys: &MixKeys,
) -> Result<Plan> {
    let counts = test_counts(docs, weights, n_test)?;
    // Pass 1: the held-out documents, the `counts[s]` smallest keys of each source.
    let mut sources = Vec::with_capacity(docs.len());
    for (s, &count) in counts.iter().enumerate() {
        let mut heap: BinaryHeap<(u64, u64, u32, RecKey)> = BinaryHeap::new();
        let mut j = 0u64;
        index.for_each_doc(s, |piece, rec| {
            let key = keys.order(s, j);
            if count > 0
                && (heap.len() < count || (key, j) < heap.peek().map(|t| (t.0, t.1)).expect("full"))
            {
                heap.push((key, j, piece, RecKey(*rec)));
                if heap.len() > count {
                    heap.pop();
                }
            }
            j += 1;
            Ok(())
        })?;
        let mut test: Vec<(u64, TestDoc)> = heap
            .into_iter()
            .map(|(key, j, piece, r)| (key, TestDoc { j, piece, rec: r.0 }))
            .collect();
        test.sort_by_key(|t| (t.0, t.1.j));
        let test: Vec<TestDoc> = test.into_iter().map(|t| t.1).collect();
        sources.push(SourcePlan {
            documents: docs[s],
            test_js: test.iter().map(|t| t.j).collect(),
            test,
            unique_docs: 0,
            unique_tokens: 0,
            passes: 0,
            prefix: None,
            picked_docs: 0,
            picked_tokens: 0,
        });
    }
    let held: HashSet<u64> = sources
        .iter()
        .flat_map(|s| s.test.iter().map(|t| t.rec.content))
        .collect();

    // Pass 2: each source's training documents and tokens, per key range.
    let mut hists = Vec::with_capacity(docs.len());
    for (s, sp) in sources.iter_mut().enumerate() {
        let mut tokens = vec![0u64; RANGES];
        let mut count = vec![0u32; RANGES];
        let mut j = 0u64;
        index.for_each_doc(s, |_, rec| {
            if !sp.test_js.contains(&j) && !held.contains(&rec.content) {
                let r = range_of(keys.order(s, j));
                tokens[r] += rec.len as u64;
                count[r] += 1;
                sp.unique_docs += 1;
                sp.unique_tokens += rec.len as u64;
            }
            j += 1;
            Ok(())
        })?;
        if sp.unique_docs == 0 {
            bail!("data.source[{s}]: every document is also in the test split; add data or lower data.test-examples");
        }
        hists.push((tokens, count));
    }

    // The budget: whole passes and what is left, per source.
    let wsum: f64 = weights.iter().sum();
    let share: Vec<f64> = weights.iter().map(|w| w / wsum).collect();
    let rests: Vec<Option<Rest>> = match budget {
        Budget::Examples(n) => {
            let caps = vec![usize::MAX; weights.len()];
            let per = share_out(n as usize, weights, &caps);
            sources
                .iter_mut()
                .zip(per)
                .map(|(sp, c)| {
                    sp.passes = c as u64 / sp.unique_docs;
                    let rest = c as u64 % sp.unique_docs;
                    (rest > 0).then_some(Rest::Docs(rest))
                })
                .collect()
        }
        Budget::Tokens(_) | Budget::NoRepeat => {
            let total = match budget {
                Budget::Tokens(t) => t as f64,
                // The scarcest source (relative to its weight) is used exactly once.
                _ => sources
                    .iter()
                    .zip(&share)
                    .map(|(sp, sh)| sp.unique_tokens as f64 / sh)
                    .fold(f64::INFINITY, f64::min),
            };
            sources
                .iter_mut()
                .zip(&share)
                .map(|(sp, sh)| {
                    let t = sp.unique_tokens as f64;
                    let target = if matches!(budget, Budget::NoRepeat) && t <= total * sh + 0.5 {
                        t
                    } else {
                        total * sh
                    };
                    sp.passes = (target / t).floor() as u64;
                    let rest = target - sp.passes as f64 * t;
                    (rest > 0.0).then_some(Rest::Tokens(rest))
                })
                .collect()
        }
    };

    // Pass 3 (sources with a rest): the key range where the prefix ends, sorted.
    for (s, (sp, rest)) in sources.iter_mut().zip(rests).enumerate() {
        sp.picked_docs = sp.passes * sp.unique_docs;
        sp.picked_tokens = sp.passes * sp.unique_tokens;
        let Some(rest) = rest else { continue };
        let (tokens, count) = &hists[s];
        let (mut cum_tokens, mut cum_docs) = (0u64, 0u64);
        let mut range = None;
        for r in 0..RANGES {
            let past = match rest {
                Rest::Tokens(t) => (cum_tokens + tokens[r]) as f64 > t,
                Rest::Docs(d) => cum_docs + count[r] as u64 > d,
            };
            if past {
                range = Some(r);
                break;
            }
            cum_tokens += tokens[r];
            cum_docs += count[r] as u64;
        }
        let Some(range) = range else {
            // Rounding left a rest no smaller than the source: one more whole pass.
            sp.passes += 1;
            sp.picked_docs += sp.unique_docs;
            sp.picked_tokens += sp.unique_tokens;
            continue;
        };
        let mut in_range: Vec<(u64, u64, u32)> = Vec::new();
        let mut j = 0u64;
        let (test_js, held) = (&sp.test_js, &held);
        index.for_each_doc(s, |_, rec| {
            let key = keys.order(s, j);
            if range_of(key) == range && !test_js.contains(&j) && !held.contains(&rec.content) {
                in_range.push((key, j, rec.len));
            }
            j += 1;
            Ok(())
        })?;
        in_range.sort_unstable();
        let mut last = None;
        let (mut acc, mut taken) = (cum_tokens, cum_docs);
        for &(key, j, len) in &in_range {
            let take = match rest {
                // Stop before a document that would overshoot more than stopping undershoots.
                Rest::Tokens(t) => {
                    let a = acc as f64;
                    a < t && a + len as f64 - t <= t - a
                }
                Rest::Docs(d) => taken < d,
            };
            if !take {
                break;
            }
            acc += len as u64;
            taken += 1;
            last = Some((key, j));
        }
        sp.prefix = Some((range, last));
        sp.picked_docs += taken;
        sp.picked_tokens += acc;
    }
    let plan = Plan { sources, held };
    if plan.train_entries() == 0 {
        bail!("the mix is empty: the budget is smaller than one document");
    }
    Ok(plan)
}

/// A record ordered by nothing: heap entries compare by (key, index) alone.
#[derive(Debug, Clone, Copy)]
struct RecKey(DocRecord);

impl PartialEq for RecKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RecKey {}
impl PartialOrd for RecKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RecKey {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
