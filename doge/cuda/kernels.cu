// doge's fused CUDA kernels. Compiled at run time by NVRTC (doge/cuda/mod.rs), so using them needs
// no nvcc, and checked at build time only by `doge cuda kernels` (NVRTC on the CPU machine).
// All tensors are contiguous float32 unless noted; every kernel is checked against the composed
// candle ops by `doge cuda selftest` on a GPU.

#define WARP 32
// NVRTC compiles without the standard headers, so no INFINITY macro.
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int warps = blockDim.x / WARP;
    v = (lane < warps) ? partial[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int warps = blockDim.x / WARP;
    v = (lane < warps) ? partial[lane] : NEG_INF;
    return warp_max(v);
}

// ---- RMSNorm: y = w * x * rstd, rstd = 1/sqrt(mean(x^2) + eps), over rows of `cols`. One block a row.
extern "C" __global__ void rms_norm_fwd(const float* x, const float* w, float* y, float* rstd,
                                        int rows, int cols, float eps) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
    float r = rsqrtf(block_sum(ss) / cols + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    float* yr = y + (size_t)row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = w[c] * (xr[c] * r);
}

// dx = rstd * g - x * rstd^3 * mean(g * x), with g = dy * w. One block a row.
extern "C" __global__ void rms_norm_bwd_x(const float* dy, const float* x, const float* w,
                                         const float* rstd, float* dx, int rows, int cols) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    const float* dyr = dy + (size_t)row * cols;
    float dot = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += dyr[c] * w[c] * xr[c];
    float mean = block_sum(dot) / cols;
    float r = rstd[row];
    float* dxr = dx + (size_t)row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        dxr[c] = r * dyr[c] * w[c] - xr[c] * r * r * r * mean;
}

// dw[c] = sum over rows of dy * x * rstd. One thread a column (coalesced across a warp).
extern "C" __global__ void rms_norm_bwd_w(const float* dy, const float* x, const float* rstd,
                                         float* dw, int rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float acc = 0.0f;
    for (int r = 0; r < rows; r++) acc += dy[(size_t)r * cols + c] * x[(size_t)r * cols + c] * rstd[r];
    dw[c] = acc;
}

// ---- Cross-entropy over the vocabulary, one block a row: loss = logsumexp(l) - l[label]; rows
// whose label is `ignore` get loss 0. The logsumexp is kept for the backward pass, so softmax is
// never materialised in the forward.
extern "C" __global__ void cross_entropy_fwd(const float* logits, const long long* labels,
                                             float* loss, float* lse, int rows, int vocab,
                                             long long ignore) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* l = logits + (size_t)row * vocab;
    float m = NEG_INF;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) m = fmaxf(m, l[c]);
    m = block_max(m);
    float s = 0.0f;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) s += __expf(l[c] - m);
    s = block_sum(s);
    if (threadIdx.x == 0) {
        float z = m + __logf(s);
        lse[row] = z;
        long long t = labels[row];
        loss[row] = (t == ignore || t < 0 || t >= vocab) ? 0.0f : z - l[t];
    }
}

// dlogits = g[row] * (softmax(l) - onehot(label)); zero for ignored rows.
extern "C" __global__ void cross_entropy_bwd(const float* logits, const long long* labels,
                                             const float* lse, const float* g, float* dlogits,
                                             int rows, int vocab, long long ignore) {
    int row = blockIdx.x;
    if (row >= rows) return;
    long long t = labels[row];
    bool skip = (t == ignore || t < 0 || t >= vocab);
    float gr = skip ? 0.0f : g[row];
    float z = lse[row];
    const float* l = logits + (size_t)row * vocab;
    float* d = dlogits + (size_t)row * vocab;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        float p = __expf(l[c] - z);
        d[c] = gr * (p - (c == t ? 1.0f : 0.0f));
    }
}

// ---- AdamW, torch's formula (decoupled decay, bias corrections), one thread an element:
// theta <- theta * (1 - lr*wd); m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
// theta <- theta - step_size * m / (sqrt(v) / bc2_sqrt + eps), with g = grad * grad_scale.
extern "C" __global__ void adamw_step(const float* theta, const float* grad, const float* m,
                                      const float* v, float* theta_out, float* m_out, float* v_out,
                                      size_t n, float decay_factor, float beta1, float beta2,
                                      float eps, float step_size, float bc2_sqrt,
                                      float grad_scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    float th = theta[i] * decay_factor;
    th -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    theta_out[i] = th;
    m_out[i] = mi;
    v_out[i] = vi;
}

// ---- Dynamic mask attention forward, flash style: one warp per (batch, head, query), the
// lanes split head_dim (at most 256), keys streamed with an online softmax, so the [Lq, Lk] score
// matrix never exists. q [B, H, Lq, D]; k, v [B, Hkv, Lk, D]; mask [B, Hkv, Lq, Lk] additive
// (the dynamic bias where a key is kept, the masked-fill value where it is not; it carries the
// causal rule and the top-k window); out [B, H, Lq, D]; lse [B, H, Lq] for a backward pass.
extern "C" __global__ void dma_attention_fwd(const float* q, const float* k, const float* v,
                                             const float* mask, float* out, float* lse, int batch,
                                             int heads, int kv_heads, int lq, int lk, int dim,
                                             float scale) {
    int warps_per_block = blockDim.x / WARP;
    long long row = (long long)blockIdx.x * warps_per_block + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    long long rows = (long long)batch * heads * lq;
    if (row >= rows) return;
    int i = row % lq;
    int h = (row / lq) % heads;
    int b = row / ((long long)lq * heads);
    int hk = h / (heads / kv_heads);
    const float* qr = q + row * dim;
    const float* kb = k + ((long long)b * kv_heads + hk) * lk * dim;
    const float* vb = v + ((long long)b * kv_heads + hk) * lk * dim;
    const float* mr = mask + (((long long)b * kv_heads + hk) * lq + i) * lk;
    const int per_lane = 8;  // dim <= 256
    float qv[per_lane], acc[per_lane];
    for (int e = 0; e < per_lane; e++) {
        int d = lane + e * WARP;
        qv[e] = d < dim ? qr[d] : 0.0f;
        acc[e] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int j = 0; j < lk; j++) {
        const float* kr = kb + (long long)j * dim;
        float dot = 0.0f;
        for (int e = 0; e < per_lane; e++) {
            int d = lane + e * WARP;
            if (d < dim) dot += qv[e] * kr[d];
        }
        float s = warp_sum(dot) * scale + mr[j];
        float m_new = fmaxf(m, s);
        float correction = __expf(m - m_new);
        float p = __expf(s - m_new);
        l = l * correction + p;
        const float* vr = vb + (long long)j * dim;
        for (int e = 0; e < per_lane; e++) {
            int d = lane + e * WARP;
            if (d < dim) acc[e] = acc[e] * correction + p * vr[d];
        }
        m = m_new;
    }
    float* o = out + row * dim;
    for (int e = 0; e < per_lane; e++) {
        int d = lane + e * WARP;
        if (d < dim) o[d] = acc[e] / l;
    }
    if (lane == 0) lse[row] = m + __logf(l);
}

// ---- Dynamic mask attention backward, from the forward's output and logsumexp: one warp per
// (batch, head, query) row. With p = exp(s - lse), dp_j = dO·v_j, D = dO·O and ds_j = p_j (dp_j - D):
// dQ = scale Σ_j ds_j k_j (kept in registers); dK_j += scale ds_j q, dV_j += p_j dO and
// dMask_ij += ds_j are shared by the rows (and the heads of a kv group) that read key j, so they
// are accumulated with atomics into zeroed buffers. dmask is [B, Hkv, Lq, Lk] like the mask.
extern "C" __global__ void dma_attention_bwd(const float* q, const float* k, const float* v,
                                             const float* mask, const float* out,
                                             const float* lse, const float* dout, float* dq,
                                             float* dk, float* dv, float* dmask, int batch,
                                             int heads, int kv_heads, int lq, int lk, int dim,
                                             float scale) {
    int warps_per_block = blockDim.x / WARP;
    long long row = (long long)blockIdx.x * warps_per_block + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    long long rows = (long long)batch * heads * lq;
    if (row >= rows) return;
    int i = row % lq;
    int h = (row / lq) % heads;
    int b = row / ((long long)lq * heads);
    int hk = h / (heads / kv_heads);
    long long kv_base = ((long long)b * kv_heads + hk) * lk * dim;
    const float* mr = mask + (((long long)b * kv_heads + hk) * lq + i) * lk;
    float* dmr = dmask + (((long long)b * kv_heads + hk) * lq + i) * lk;
    const int per_lane = 8;  // dim <= 256
    float qv[per_lane], dov[per_lane], dqv[per_lane];
    float dsum = 0.0f;
    for (int e = 0; e < per_lane; e++) {
        int d = lane + e * WARP;
        qv[e] = d < dim ? q[row * dim + d] : 0.0f;
        dov[e] = d < dim ? dout[row * dim + d] : 0.0f;
        dsum += d < dim ? dov[e] * out[row * dim + d] : 0.0f;
        dqv[e] = 0.0f;
    }
    dsum = warp_sum(dsum);
    float z = lse[row];
    for (int j = 0; j < lk; j++) {
        const float* kr = k + kv_base + (long long)j * dim;
        const float* vr = v + kv_base + (long long)j * dim;
        float dot = 0.0f, dp = 0.0f;
        for (int e = 0; e < per_lane; e++) {
            int d = lane + e * WARP;
            if (d < dim) {
                dot += qv[e] * kr[d];
                dp += dov[e] * vr[d];
            }
        }
        float s = warp_sum(dot) * scale + mr[j];
        dp = warp_sum(dp);
        float p = __expf(s - z);
        if (p == 0.0f) continue;  // a dropped key (or one that underflows) carries no gradient
        float ds = p * (dp - dsum);
        float* dkr = dk + kv_base + (long long)j * dim;
        float* dvr = dv + kv_base + (long long)j * dim;
        for (int e = 0; e < per_lane; e++) {
            int d = lane + e * WARP;
            if (d < dim) {
                dqv[e] += ds * kr[d] * scale;
                atomicAdd(dkr + d, ds * qv[e] * scale);
                atomicAdd(dvr + d, p * dov[e]);
            }
        }
        if (lane == 0) atomicAdd(dmr + j, ds);
    }
    for (int e = 0; e < per_lane; e++) {
        int d = lane + e * WARP;
        if (d < dim) dq[row * dim + d] = dqv[e];
    }
}
