//! Candle tensors over the collectives: rank 0's weights to every rank, and the mean of every
//! rank's gradients. At world 1 both are the identity. Gradients on CUDA devices are summed by
//! NCCL (feature `cuda`, [`super::nccl`]); everything else travels as f32 through host memory
//! (MPI), CUDA weights included (once, at the start).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use super::{world, Wait};

fn flatten_into(out: &mut Vec<f32>, t: &Tensor) -> Result<()> {
    out.extend(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    Ok(())
}

/// Rank 0's values of `tensors`, shaped, typed and placed like each rank's own (which must have
/// the same shapes: every rank builds the same model).
pub fn broadcast_tensors(tensors: &[Tensor]) -> Result<Vec<Tensor>> {
    let w = world();
    if w.size == 1 {
        return Ok(tensors.to_vec());
    }
    let dims: Vec<Vec<usize>> = tensors.iter().map(|t| t.dims().to_vec()).collect();
    let root_dims: Vec<Vec<usize>> = super::from_root(w.is_root().then_some(&dims), Wait::Bounded)?;
    if root_dims != dims {
        bail!(
            "rank {}: rank 0's model has other tensor shapes than this rank's; every rank must run the same experiment",
            w.rank
        );
    }
    let mut flat = Vec::new();
    if w.is_root() {
        for t in tensors {
            flatten_into(&mut flat, t)?;
        }
    }
    super::broadcast_f32(&mut flat, Wait::Bounded)?;
    let mut at = 0;
    tensors
        .iter()
        .map(|t| {
            let n = t.elem_count();
            let v = Tensor::from_slice(&flat[at..at + n], t.dims(), t.device())?;
            at += n;
            Ok(v.to_dtype(t.dtype())?)
        })
        .collect()
}

/// Replaces each rank's gradients by their mean over the ranks, in one bucket. `like` gives each
/// slot's shape, for a slot with no gradient on this rank; a slot stays empty only when it has
/// no gradient on any rank, as it would in one process.
pub fn all_reduce_mean(grads: &mut [Option<Tensor>], like: &[&Tensor]) -> Result<()> {
    let w = world();
    #[cfg(feature = "cuda")]
    if like.first().is_some_and(|t| t.device().is_cuda())
        && (w.size > 1 || super::nccl::forced_at_world_1())
    {
        return all_reduce_mean_nccl(grads, like, w.size);
    }
    if w.size == 1 {
        return Ok(());
    }
    // The bucket: one presence count per slot, then every slot's values (zeros where absent).
    let mut bucket: Vec<f32> = grads
        .iter()
        .map(|g| if g.is_some() { 1.0 } else { 0.0 })
        .collect();
    for (g, l) in grads.iter().zip(like) {
        match g {
            Some(g) => flatten_into(&mut bucket, g)?,
            None => bucket.extend(std::iter::repeat_n(0f32, l.elem_count())),
        }
    }
    super::all_reduce_sum_f32(&mut bucket)?;
    let scale = 1.0 / w.size as f32;
    let mut at = grads.len();
    for (k, (g, l)) in grads.iter_mut().zip(like).enumerate() {
        let n = l.elem_count();
        if bucket[k] > 0.0 {
            let mean: Vec<f32> = bucket[at..at + n].iter().map(|x| x * scale).collect();
            let dtype = g.as_ref().map(|g| g.dtype()).unwrap_or(l.dtype());
            *g = Some(Tensor::from_vec(mean, l.dims(), l.device())?.to_dtype(dtype)?);
        }
        at += n;
    }
    Ok(())
}

/// [`all_reduce_mean`] on the GPU: presence counts over MPI, then every slot's values in one
/// float32 bucket through NCCL, scaled by 1/world as the host path does.
#[cfg(feature = "cuda")]
fn all_reduce_mean_nccl(
    grads: &mut [Option<Tensor>],
    like: &[&Tensor],
    world_size: usize,
) -> Result<()> {
    let mut present: Vec<f32> = grads
        .iter()
        .map(|g| if g.is_some() { 1.0 } else { 0.0 })
        .collect();
    super::all_reduce_sum_f32(&mut present)?;
    let flat: Vec<Tensor> = grads
        .iter()
        .zip(like)
        .map(|(g, l)| match g {
            Some(g) => Ok(g.flatten_all()?.to_dtype(DType::F32)?),
            None => Ok(Tensor::zeros(l.elem_count(), DType::F32, l.device())?),
        })
        .collect::<Result<_>>()?;
    let bucket = Tensor::cat(&flat, 0)?;
    drop(flat);
    let sum = super::nccl::all_reduce_sum(&bucket)?;
    let mean = sum.affine(1.0 / world_size as f64, 0.0)?;
    let mut at = 0;
    for (k, (g, l)) in grads.iter_mut().zip(like).enumerate() {
        let n = l.elem_count();
        if present[k] > 0.0 {
            let dtype = g.as_ref().map(|g| g.dtype()).unwrap_or(l.dtype());
            *g = Some(mean.narrow(0, at, n)?.reshape(l.dims())?.to_dtype(dtype)?);
        }
        at += n;
    }
    Ok(())
}
