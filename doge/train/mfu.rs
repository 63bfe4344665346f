//! Model FLOPs utilisation: achieved FLOP/s (tokens/s × FLOPs per token, see `model::flops`) over
//! the device's peak for the dtype the matmuls run in.
//!
//! Peaks are NVIDIA's datasheet numbers for dense (non-sparse) tensor-core math, in TFLOP/s. A
//! device not in the table has no MFU unless `--peak-tflops` gives its peak. float32 without
//! autocast runs on CUDA cores (candle does not turn on TF32), so its peak is the FP32 figure.

use candle_core::{DType, Device};

/// (name fragment, bf16/f16 dense peak, fp32 peak), first match wins: specific names first.
const PEAKS: &[(&str, f64, f64)] = &[
    ("H100 PCIe", 756.0, 51.2),
    ("H100 NVL", 835.0, 60.0),
    ("GH200", 989.4, 66.9),
    ("H200", 989.4, 66.9),
    ("H100", 989.4, 66.9),
    ("H800", 989.4, 66.9),
    ("A100", 312.0, 19.5),
    ("A800", 312.0, 19.5),
    ("L40S", 362.1, 91.6),
    ("L4", 121.0, 30.3),
    ("A10G", 70.0, 31.2),
    ("RTX 4090", 165.2, 82.6),
    ("RTX 3090", 71.0, 35.6),
];

/// The datasheet peak in FLOP/s for a device name and matmul dtype, when the table has it.
pub fn peak_flops(device_name: &str, matmul: DType) -> Option<f64> {
    let (_, low, f32_peak) = PEAKS
        .iter()
        .find(|(fragment, _, _)| device_name.contains(fragment))?;
    let tflops = match matmul {
        DType::BF16 | DType::F16 => *low,
        _ => *f32_peak,
    };
    Some(tflops * 1e12)
}

/// The accelerator's marketing name ("NVIDIA H100 80GB HBM3"), or None on CPU.
pub fn device_name(dev: &Device) -> Option<String> {
    match dev {
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => cuda.cuda_stream().context().name().ok(),
        _ => None,
    }
}

/// What MFU is computed from for one run.
#[derive(Debug, Clone, Copy)]
pub struct Utilisation {
    pub flops_per_token: f64,
    pub peak_flops: f64,
}

impl Utilisation {
    /// Fraction of peak (0..1) at this throughput.
    pub fn mfu(&self, tokens_per_s: f64) -> f64 {
        tokens_per_s * self.flops_per_token / self.peak_flops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_the_datasheet_peaks() {
        let tflops =
            |name: &str, dtype| peak_flops(name, dtype).map(|p| (p / 1e12 * 10.0).round() / 10.0);
        assert_eq!(tflops("NVIDIA H100 80GB HBM3", DType::BF16), Some(989.4));
        assert_eq!(tflops("NVIDIA H100 PCIe", DType::BF16), Some(756.0));
        assert_eq!(tflops("NVIDIA H200", DType::F32), Some(66.9));
        assert_eq!(tflops("Some CPU", DType::BF16), None);
    }

    #[test]
    fn mfu_is_achieved_over_peak() {
        // The target: Doge-60M at 750K tokens/s is about 40% of an H100's bf16 peak.
        let u = Utilisation {
            flops_per_token: 6.0 * 88e6,
            peak_flops: 989.4e12,
        };
        let mfu = u.mfu(750e3);
        assert!(mfu > 0.39 && mfu < 0.41, "{mfu}");
    }
}
