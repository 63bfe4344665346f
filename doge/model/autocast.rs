//! bf16 autocast for matrix products, as `torch.autocast(dtype=bfloat16)` does it: weights and
//! optimizer state stay float32 (the master copy), each matmul casts its operands to bf16, multiplies
//! (accumulating in float32 inside cuBLAS) and casts the product back to float32. Element-wise ops,
//! norms, softmax and the loss stay float32. bf16 has float32's exponent range, so no loss scaling
//! is needed. The cast has a gradient in candle, so the backward pass flows to the float32 weights.
//!
//! It is a per-thread setting (like torch's autocast context): the runner turns it on for a stage
//! and the model's matmuls on that thread read it. Off by default, so scoring and the parity tests
//! are float32, and tests running in parallel threads do not see each other's setting.

use std::cell::Cell;

use candle_core::{DType, Module, Result, Tensor};

thread_local! {
    static MODE: Cell<u8> = const { Cell::new(0) };
}

/// The dtype matmuls run in, or None for "as the operands are".
pub fn matmul_dtype() -> Option<DType> {
    match MODE.with(Cell::get) {
        1 => Some(DType::BF16),
        2 => Some(DType::F16),
        _ => None,
    }
}

/// Turns autocast on (bf16 or f16) or off (None) until the returned guard drops.
pub fn enable(dtype: Option<DType>) -> Guard {
    let code = match dtype {
        Some(DType::BF16) => 1,
        Some(DType::F16) => 2,
        _ => 0,
    };
    Guard {
        previous: MODE.with(|m| m.replace(code)),
    }
}

#[must_use = "autocast is turned off again when the guard drops"]
pub struct Guard {
    previous: u8,
}

impl Drop for Guard {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.previous));
    }
}

/// a @ b (broadcasting the leading dims), in the autocast dtype when one is on and the operands
/// are float32; the result has a's dtype.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match matmul_dtype() {
        Some(low) if a.dtype() == DType::F32 && b.dtype() == DType::F32 => a
            .to_dtype(low)?
            .broadcast_matmul(&b.to_dtype(low)?)?
            .to_dtype(DType::F32),
        _ => a.broadcast_matmul(b),
    }
}

/// A Linear layer (y = x Wᵀ + b) whose product follows the autocast setting.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul(x, &self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bf16_products_round_the_operands_and_keep_f32_outputs() {
        // 1 + 2^-10 is not representable in bf16 (8 bits of mantissa): it rounds to 1.
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1.0f32 + 1.0 / 1024.0]], &dev).unwrap();
        let b = Tensor::new(&[[1.0f32]], &dev).unwrap();
        let exact = matmul(&a, &b).unwrap().to_vec2::<f32>().unwrap()[0][0];
        assert_eq!(exact, 1.0 + 1.0 / 1024.0);
        let _guard = enable(Some(DType::BF16));
        let low = matmul(&a, &b).unwrap();
        assert_eq!(low.dtype(), DType::F32);
        assert_eq!(low.to_vec2::<f32>().unwrap()[0][0], 1.0);
    }
}
