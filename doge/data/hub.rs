//! Hugging Face hub access (datasets and tokenizers) through `hf-hub`, with an offline mode.
//!
//! Online, files are downloaded into the hub cache (`$HF_HOME/hub`, default
//! `~/.cache/huggingface/hub`) and reused from there, from `HF_ENDPOINT` when set (a mirror, as
//! `huggingface_hub` honours it) else https://huggingface.co. Offline (`HF_HUB_OFFLINE=1`, or
//! `--offline`), only that cache is read, so a machine without network works from files copied
//! into the cache or from local paths.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// Where and how to reach the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Read only the local cache.
    pub offline: bool,
    /// The hub cache directory (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    /// The hub's base URL when not https://huggingface.co (`HF_ENDPOINT`).
    pub endpoint: Option<String>,
}

impl HubOptions {
    /// From the environment, as the Python tools do: `HF_HUB_OFFLINE` (`1`/`true`/`yes`),
    /// `HF_HOME` and `HF_ENDPOINT`.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        HubOptions {
            offline,
            cache_dir: Cache::from_env().path().clone(),
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .filter(|e| !e.is_empty()),
        }
    }

    /// A hub client on this cache and endpoint.
    fn api(&self, progress: bool) -> Result<hf_hub::api::sync::Api> {
        let mut builder = ApiBuilder::from_cache(self.cache()).with_progress(progress);
        if let Some(e) = &self.endpoint {
            builder = builder.with_endpoint(e.clone());
        }
        builder.build().context("starting the hub client")
    }

    fn cache(&self) -> Cache {
        Cache::new(self.cache_dir.clone())
    }

    fn repo(&self, id: &str, kind: RepoType, revision: Option<&str>) -> Repo {
        Repo::with_revision(id.to_string(), kind, revision.unwrap_or("main").to_string())
    }
}

/// One file of a model repository (a tokenizer's `tokenizer.json`), from the cache or the hub.
pub fn model_file(
    id: &str,
    revision: Option<&str>,
    file: &str,
    opts: &HubOptions,
) -> Result<PathBuf> {
    let repo = opts.repo(id, RepoType::Model, revision);
    if let Some(p) = opts.cache().repo(repo.clone()).get(file) {
        return Ok(p);
    }
    let rev = revision.unwrap_or("main");
    if opts.offline {
        bail!(
            "offline (HF_HUB_OFFLINE): `{file}` of `{id}` (revision {rev}) is not in the hub cache {}; \
             put a copy of the tokenizer folder (tokenizer.json, tokenizer_config.json) on this machine and \
             give its path (tokenizer \"./path/to/tokenizer\"), or fetch it once with network",
            opts.cache_dir.display()
        );
    }
    let api = opts.api(false)?;
    api.repo(repo).get(file).with_context(|| {
        format!(
            "could not fetch `{file}` of `{id}` (revision {rev}) from the hub; without network, set HF_HUB_OFFLINE=1 \
             and place the file in the hub cache {}, or point at a local copy (tokenizer \"./path/to/tokenizer\")",
            opts.cache_dir.display()
        )
    })
}

/// The data files of one configuration and split of a hub dataset, downloaded (online) or found
/// in the cache (offline), in name order. Files are `.parquet`, `.jsonl` or `.json` under a
/// folder named after the configuration whose name starts with or contains the split.
pub fn dataset_files(
    id: &str,
    revision: Option<&str>,
    subset: Option<&str>,
    split: &str,
    opts: &HubOptions,
) -> Result<Vec<PathBuf>> {
    let repo = opts.repo(id, RepoType::Dataset, revision);
    let rev = revision.unwrap_or("main");
    let pattern = match subset {
        Some(s) => format!("{s}/*{split}*.parquet|jsonl|json"),
        None => format!("*{split}*.parquet|jsonl|json"),
    };
    if opts.offline {
        let files = cached_snapshot_files(&opts.cache_dir, &repo)?;
        let picked = pick(&files, subset, split);
        if picked.is_empty() {
            bail!(
                "offline (HF_HUB_OFFLINE): no cached files of dataset `{id}` (revision {rev}) match `{pattern}` in the hub cache {}; \
                 tried to find them under {}; download them where there is network (e.g. `huggingface-cli download --repo-type dataset {id} --include '{}*'`) \
                 and copy the cache here, or point `source` at a local copy of the files (source \"./data/{}\")",
                opts.cache_dir.display(),
                opts.cache_dir.join(repo.folder_name()).join("snapshots").display(),
                subset.map(|s| format!("{s}/")).unwrap_or_default(),
                subset.unwrap_or("train.parquet"),
            );
        }
        let snap = snapshot_dir(&opts.cache_dir, &repo)?;
        return Ok(picked.into_iter().map(|f| snap.join(f)).collect());
    }
    let api = opts.api(true)?;
    let api_repo = api.repo(repo.clone());
    let info = api_repo
        .info()
        .with_context(|| listing_failed(id, rev, &api_repo, opts))?;
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let picked = pick(&names, subset, split);
    if picked.is_empty() {
        bail!("dataset `{id}` (revision {rev}) has no files matching `{pattern}`; check `subset` and `split`");
    }
    picked
        .iter()
        .map(|f| {
            api_repo.get(f).with_context(|| {
                format!(
                    "could not fetch `{f}` of dataset `{id}` (revision {rev}); without network, set HF_HUB_OFFLINE=1 and \
                     place it in the hub cache {}, or point `source` at a local copy (source \"./{f}\")",
                    opts.cache_dir.display()
                )
            })
        })
        .collect()
}

fn listing_failed(
    id: &str,
    rev: &str,
    api_repo: &hf_hub::api::sync::ApiRepo,
    opts: &HubOptions,
) -> String {
    format!(
        "could not list the files of dataset `{id}` (revision {rev}) from the hub (tried {}); without network, \
         set HF_HUB_OFFLINE=1 to use the hub cache {}, or point `source` at a local copy of the files",
        api_repo.url("").trim_end_matches('/'),
        opts.cache_dir.display()
    )
}

/// A data file of a hub dataset as the hub lists it (`?blobs=true`): its Git LFS sha256 and size
/// are known before it is downloaded, so a preparation can be fingerprinted up front and fetch
/// each file only when its turn comes.
#[derive(Debug, Clone, PartialEq)]
pub struct HubFile {
    pub id: String,
    pub revision: Option<String>,
    /// Path in the repository.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// Where the file is (or will be) in the hub cache's snapshot.
    pub path: PathBuf,
}

/// The data files of a dataset's subset and split with their LFS hashes, listed without
/// downloading any; `None` when offline, or when a file is not in LFS (small JSON files), in
/// which case [`dataset_files`] downloads them all up front.
pub fn dataset_listing(
    id: &str,
    revision: Option<&str>,
    subset: Option<&str>,
    split: &str,
    opts: &HubOptions,
) -> Result<Option<Vec<HubFile>>> {
    if opts.offline {
        return Ok(None);
    }
    let repo = opts.repo(id, RepoType::Dataset, revision);
    let rev = revision.unwrap_or("main");
    let api = opts.api(false)?;
    let api_repo = api.repo(repo.clone());
    let body = api_repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|r| r.into_string().map_err(Into::into))
        .with_context(|| listing_failed(id, rev, &api_repo, opts))?;
    let info: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("the hub's file list of dataset `{id}` is not JSON"))?;
    let commit = info["sha"].as_str().unwrap_or(rev).to_string();
    let siblings = info["siblings"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = siblings
        .iter()
        .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
        .collect();
    let picked = pick(&names, subset, split);
    if picked.is_empty() {
        bail!("dataset `{id}` (revision {rev}) has no files matching `{}`; check `subset` and `split`",
            match subset {
                Some(s) => format!("{s}/*{split}*.parquet|jsonl|json"),
                None => format!("*{split}*.parquet|jsonl|json"),
            });
    }
    let snap = opts
        .cache_dir
        .join(repo.folder_name())
        .join("snapshots")
        .join(&commit);
    let mut out = Vec::new();
    for f in picked {
        let s = siblings
            .iter()
            .find(|s| s["rfilename"].as_str() == Some(f.as_str()))
            .expect("picked from these");
        let (Some(sha), Some(size)) = (s["lfs"]["sha256"].as_str(), s["lfs"]["size"].as_u64())
        else {
            return Ok(None);
        };
        out.push(HubFile {
            id: id.to_string(),
            revision: revision.map(str::to_string),
            path: snap.join(&f),
            file: f,
            sha256: sha.to_string(),
            size,
        });
    }
    Ok(Some(out))
}

/// Downloads a listed file into the hub cache (resuming a partial download), or finds it there.
pub fn fetch(f: &HubFile, opts: &HubOptions) -> Result<PathBuf> {
    let repo = opts.repo(&f.id, RepoType::Dataset, f.revision.as_deref());
    if let Some(p) = opts.cache().repo(repo.clone()).get(&f.file) {
        if p.exists() {
            return Ok(p);
        }
        // A link whose blob `--delete-raw` freed: fetch the blob again.
        let _ = std::fs::remove_file(&p);
    }
    let api = opts.api(false)?;
    api.repo(repo).download(&f.file).with_context(|| {
        format!(
            "could not fetch `{}` of dataset `{}`; without network, set HF_HUB_OFFLINE=1 and place it in the hub cache {}, or point `source` at a local copy",
            f.file,
            f.id,
            opts.cache_dir.display()
        )
    })
}

/// Frees a downloaded file's bytes (`--delete-raw`): the blob goes, the snapshot's link stays,
/// so the cache still names the file and its hash for later runs (offline ones included).
pub fn delete_raw(path: &Path) -> Result<()> {
    let Ok(target) = std::fs::read_link(path) else {
        return Ok(()); // not a hub cache link: never delete a user's own files
    };
    if target
        .parent()
        .and_then(|p| p.file_name())
        .is_none_or(|n| n != "blobs")
    {
        return Ok(());
    }
    let blob = path.parent().map(|d| d.join(&target)).unwrap_or(target);
    match std::fs::remove_file(&blob) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("deleting {}", blob.display()))
        }
        _ => Ok(()),
    }
}

/// What a checkpoint directory needs among a model repository's top-level files: config, weights
/// (`model.safetensors`, or shards and their index), tokenizer, chat template and generation
/// settings. Other formats (`pytorch_model.bin`, GGUF, ONNX) and sub-folders are left on the hub.
fn checkpoint_files(files: &[String]) -> Vec<String> {
    const NAMED: [&str; 7] = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "model.safetensors.index.json",
    ];
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| {
            // `.py`: a SmallDoge repo's remote code (its config.json's `auto_map`), which doge
            // saves back beside fine-tuned weights.
            !f.contains('/')
                && (NAMED.contains(&f.as_str())
                    || f.ends_with(".safetensors")
                    || f.ends_with(".py"))
        })
        .cloned()
        .collect();
    out.sort();
    out
}

/// A model repository (`owner/name` at `revision`, default `main`) as a local checkpoint
/// directory: its config, safetensors weights and tokenizer downloaded into the hub cache (or,
/// offline, found there). The directory is the cache's snapshot folder, laid out as
/// `huggingface_hub` lays it out, so transformers and doge share one download.
pub fn model_snapshot(id: &str, revision: Option<&str>, opts: &HubOptions) -> Result<PathBuf> {
    let repo = opts.repo(id, RepoType::Model, revision);
    let rev = revision.unwrap_or("main");
    let cached = || -> Option<PathBuf> {
        let snap = snapshot_dir(&opts.cache_dir, &repo).ok()?;
        snap.join("config.json").exists().then_some(snap)
    };
    if opts.offline {
        return cached().ok_or_else(|| {
            anyhow::anyhow!(
                "offline (HF_HUB_OFFLINE): model `{id}` (revision {rev}) is not in the hub cache {}; download it \
                 where there is network (`huggingface-cli download {id}`) and copy the cache here, or give a \
                 local checkpoint directory",
                opts.cache_dir.display()
            )
        });
    }
    let api = opts.api(true)?;
    let api_repo = api.repo(repo.clone());
    let info = match api_repo.info() {
        Ok(info) => info,
        Err(e) => {
            // Unreachable hub, cached model: use the cache, as huggingface_hub does.
            if let Some(snap) = cached() {
                eprintln!(
                    "warning: could not reach the hub for `{id}` ({e}); using the cached copy {}",
                    snap.display()
                );
                return Ok(snap);
            }
            return Err(e).with_context(|| {
                format!(
                    "could not list the files of model `{id}` (revision {rev}); check the id (owner/name), \
                     or without network set HF_HUB_OFFLINE=1 to use the hub cache {}, or give a local checkpoint directory",
                    opts.cache_dir.display()
                )
            });
        }
    };
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let wanted = checkpoint_files(&names);
    if !wanted.iter().any(|f| f == "config.json")
        || !wanted.iter().any(|f| f.ends_with(".safetensors"))
    {
        bail!(
            "model `{id}` (revision {rev}) has no config.json with .safetensors weights (files: {}); doge reads \
             safetensors checkpoints: convert the weights with transformers (`save_pretrained(..., safe_serialization=True)`)",
            names.join(", ")
        );
    }
    let mut config = None;
    for f in &wanted {
        let path = api_repo.get(f).with_context(|| {
            format!(
                "could not fetch `{f}` of model `{id}` (revision {rev}); without network, set HF_HUB_OFFLINE=1 and \
                 place the model in the hub cache {}, or give a local checkpoint directory",
                opts.cache_dir.display()
            )
        })?;
        if f == "config.json" {
            config = Some(path);
        }
    }
    let config = config.expect("config.json is among the wanted files");
    Ok(config
        .parent()
        .expect("a downloaded file has a folder")
        .to_path_buf())
}

/// A model named by a local directory, or by a hub id `owner/name[@revision]` when no such
/// directory exists: the directory to load it from (downloading a hub model into the cache).
pub fn model_dir(spec: &Path, opts: &HubOptions) -> Result<PathBuf> {
    let text = spec.to_string_lossy();
    if spec.exists() || crate::experiment::spec::is_local(&text) {
        return Ok(spec.to_path_buf());
    }
    let (id, revision) = match text.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (text.as_ref(), None),
    };
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        // Neither a directory nor a hub id: loading reports the missing directory.
        return Ok(spec.to_path_buf());
    }
    model_snapshot(id, revision, opts)
}

/// Data files of `subset` and `split` among repository paths, sorted.
fn pick(files: &[String], subset: Option<&str>, split: &str) -> Vec<String> {
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| {
            [".parquet", ".jsonl", ".json"]
                .iter()
                .any(|e| f.ends_with(e))
        })
        .filter(|f| subset.is_none_or(|s| f.split('/').rev().skip(1).any(|dir| dir == s)))
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            let dir_is_split = f.split('/').rev().skip(1).any(|d| d == split);
            name.contains(split) || dir_is_split
        })
        .cloned()
        .collect();
    out.sort();
    out
}

fn snapshot_dir(cache_dir: &Path, repo: &Repo) -> Result<PathBuf> {
    let root = cache_dir.join(repo.folder_name());
    let rev = repo.revision();
    let ref_file = root.join("refs").join(rev);
    // A full commit hash names its snapshot directly; a branch or tag goes through refs/.
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(c) => c.trim().to_string(),
        Err(_) if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) => rev.to_string(),
        Err(_) => bail!(
            "offline (HF_HUB_OFFLINE): `{}` (revision {rev}) is not in the hub cache: {} is missing; download it \
             where there is network and copy the cache here, or point `source` at a local copy of the files",
            repo.url(),
            ref_file.display()
        ),
    };
    Ok(root.join("snapshots").join(commit))
}

fn cached_snapshot_files(cache_dir: &Path, repo: &Repo) -> Result<Vec<String>> {
    let snap = snapshot_dir(cache_dir, repo)?;
    let mut out = Vec::new();
    let mut stack = vec![snap.clone()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("reading the hub cache folder {}", dir.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(&snap) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{checkpoint_files, pick};

    #[test]
    fn picks_a_checkpoint_s_files() {
        let files: Vec<String> = [
            "README.md",
            "config.json",
            "configuration_doge.py",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "modeling_doge.py",
            "pytorch_model.bin",
            "tokenizer.json",
            "onnx/model.safetensors",
            "scripts/convert.py",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            checkpoint_files(&files),
            vec![
                "config.json",
                "configuration_doge.py",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "modeling_doge.py",
                "tokenizer.json"
            ]
        );
    }

    #[test]
    fn picks_subset_and_split() {
        let files: Vec<String> = [
            "README.md",
            "fineweb-edu-dedup/train-00000-of-00234.parquet",
            "fineweb-edu-dedup/train-00001-of-00234.parquet",
            "cosmopedia-v2/train-00000-of-00104.parquet",
            "data/test-00000.jsonl",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(pick(&files, Some("fineweb-edu-dedup"), "train").len(), 2);
        assert_eq!(
            pick(&files, Some("cosmopedia-v2"), "train"),
            vec!["cosmopedia-v2/train-00000-of-00104.parquet"]
        );
        assert_eq!(pick(&files, None, "test"), vec!["data/test-00000.jsonl"]);
    }
}
