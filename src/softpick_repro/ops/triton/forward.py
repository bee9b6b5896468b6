"""Online (FlashAttention-2 style) forward kernel for the softpick family and softmax.

Conventions (SOFTPICK.md section 1, "Online forward"):
- Layout [B, T, H, D]; query row i sits at key position Tk - Tq + i (decoding when Tq < Tk).
- Scores are kept in base 2 (s2 = q.k * scale * log2(e)); exp2 of base-2 differences equals exp of
  natural differences, so every weight and the stored log-normaliser L (base 2) are exact rewrites.
- softpick / relu_softmax / rectified: running max m starts at 0 (the safe form: every exponential
  stays <= 1) and masked entries contribute 0 to the denominator. softpick and relu_softmax add eps
  after the loop in the shifted domain (l + eps, i.e. eps * exp(m) in absolute terms); rectified
  has no eps (as ops/reference.py), rows with no score >= 0 give 0.
- softmax: running max starts at -inf, or at the sink logit with l = 1 when a per-head sink is given
  (softmax_plus_one uses sink 0, gpt_oss_sink the learned logit); no eps.
- Fully masked rows give o = 0 for every arm.
- TMA (constexpr): K and V arrive as host tensor descriptors over [B, Tk, HKV, D] (block
  [1, BN, 1, BD]; rows past Tk and columns past D read as 0) and are loaded by the Hopper TMA unit
  instead of per-thread pointer loads (launch.py decides where: it measured faster at D 128 only).
"""
import triton
import triton.language as tl

# Arm codes shared with the backward kernels and the launcher.
SOFTPICK = 0
RELU_SOFTMAX = 1
RECTIFIED = 2
SOFTMAX = 3

LOG2E = 1.4426950408889634


@triton.jit
def _fwd_block(acc, m, l, q, K, V, b, hk, k_base, v_base, stride_kt, stride_vt, qpos, offs_d, lo, hi, Tk,
               scale2, ARM: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
               BD: tl.constexpr, BN: tl.constexpr, DOT_PREC: tl.constexpr, TMA: tl.constexpr):
    """One pass over key blocks [lo, hi); MASK adds the causal and the key-bounds masks."""
    dmask = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BN):
        offs_n = start_n + tl.arange(0, BN)
        if MASK:
            kmask = offs_n < Tk
        if TMA:
            kt = tl.trans(K.load([b, start_n, hk, 0]).reshape(BN, BD))
            vb = V.load([b, start_n, hk, 0]).reshape(BN, BD)
        elif MASK:
            kt = tl.load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None],
                         mask=dmask[:, None] & kmask[None, :], other=0.0)
            vb = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :],
                         mask=kmask[:, None] & dmask[None, :], other=0.0)
        else:
            kt = tl.load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None],
                         mask=dmask[:, None], other=0.0)
            vb = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :],
                         mask=dmask[None, :], other=0.0)
        # raw scores: the scale (> 0) is applied to the row max and fused into the exponent as one
        # FFMA per score, scale2 * qk - m, instead of a separate multiply (the kernels are bound
        # by per-score ALU work at head dim 64, not by the matmuls)
        qk = tl.dot(q, kt, input_precision=DOT_PREC)
        if MASK:
            valid = kmask[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= qpos[:, None])
            # -inf drops masked entries from the max, rectified and softmax; softpick's shifted
            # exponential is -exp(-m) there, so its arms also zero p below
            qk = tl.where(valid, qk, float("-inf"))
        m_new = tl.maximum(m, tl.max(qk, 1) * scale2)
        if ARM == 3:
            # finite pivot while a row has seen no key yet (m = -inf), so -inf - -inf never occurs
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_use = m_new
        r = tl.exp2(m - m_use)
        e = tl.exp2(qk * scale2 - m_use[:, None])
        if ARM == 0:
            p = e - tl.exp2(-m_use)[:, None]
            if MASK:
                p = tl.where(valid, p, 0.0)
            l = l * r + tl.sum(tl.abs(p), 1)
            w = tl.maximum(p, 0.0)
        elif ARM == 1:
            p = e - tl.exp2(-m_use)[:, None]
            if MASK:
                p = tl.where(valid, p, 0.0)
            w = tl.maximum(p, 0.0)
            l = l * r + tl.sum(w, 1)
        elif ARM == 2:
            w = tl.where(qk >= 0.0, e, 0.0)
            l = l * r + tl.sum(w, 1)
        else:
            w = e
            l = l * r + tl.sum(w, 1)
        acc = tl.dot(w.to(vb.dtype), vb, acc * r[:, None], input_precision=DOT_PREC)
        m = m_new
    return acc, m, l


@triton.jit
def attn_fwd_kernel(Q, K, V, O, L, SINK,
                    sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sob, sot, soh,
                    Tq, Tk, HQ, GROUP, scale2, eps,
                    ARM: tl.constexpr, HAS_SINK: tl.constexpr, CAUSAL: tl.constexpr,
                    HEAD_DIM: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                    DOT_PREC: tl.constexpr, TMA: tl.constexpr):
    """Grid (cdiv(Tq, BM), B * HQ). Writes O [B, Tq, HQ, D] and L [B, HQ, Tq] (base-2 log-normaliser).
    K, V: pointers, or tensor descriptors when TMA."""
    # causal: the last query blocks see the most keys, so they are scheduled first (shorter tail)
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0) if CAUSAL else tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // HQ).to(tl.int64)
    h = pid_bh % HQ
    hk = h // GROUP
    start_m = pid_m * BM
    offs_m = start_m + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    rmask = offs_m < Tq
    dmask = offs_d < HEAD_DIM
    off = Tk - Tq
    qpos = off + offs_m
    # float scalars arrive as fp32 from a plain launch but as fp64 from torch.compile's wrapper:
    # fp64 would turn every per-score multiply into fp64 arithmetic
    scale2 = tl.full([], scale2, tl.float32)

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                mask=rmask[:, None] & dmask[None, :], other=0.0)
    if TMA:
        k_base, v_base = K, V  # unused
    else:
        k_base = K + b * skb + hk * skh
        v_base = V + b * svb + hk * svh

    acc = tl.zeros([BM, BD], dtype=tl.float32)
    if ARM == 3:
        if HAS_SINK:
            sink2 = tl.load(SINK + h).to(tl.float32) * 1.4426950408889634
            m = tl.zeros([BM], dtype=tl.float32) + sink2
            l = tl.full([BM], 1.0, dtype=tl.float32)
        else:
            m = tl.full([BM], float("-inf"), dtype=tl.float32)
            l = tl.zeros([BM], dtype=tl.float32)
    else:
        m = tl.zeros([BM], dtype=tl.float32)
        l = tl.zeros([BM], dtype=tl.float32)

    if CAUSAL:
        # keys every row of the block sees need no mask; the diagonal band does
        lo_end = tl.minimum(tl.maximum(off + start_m + 1, 0) // BN * BN, Tk // BN * BN)
        hi = tl.minimum(tl.maximum(off + tl.minimum(start_m + BM, Tq), 0), Tk)
        hi = tl.maximum(hi, lo_end)
    else:
        lo_end = Tk // BN * BN
        hi = Tk
    b32 = pid_bh // HQ  # descriptor offsets are int32
    acc, m, l = _fwd_block(acc, m, l, q, K, V, b32, hk, k_base, v_base, skt, svt, qpos, offs_d, 0, lo_end, Tk,
                           scale2, ARM, False, CAUSAL, HEAD_DIM, BD, BN, DOT_PREC, TMA)
    acc, m, l = _fwd_block(acc, m, l, q, K, V, b32, hk, k_base, v_base, skt, svt, qpos, offs_d, lo_end, hi, Tk,
                           scale2, ARM, True, CAUSAL, HEAD_DIM, BD, BN, DOT_PREC, TMA)

    if ARM == 3:
        m = tl.where(m == float("-inf"), 0.0, m)
        l = tl.where(l == 0.0, 1.0, l)  # fully masked row without sink: acc = 0 keeps o = 0
    elif ARM == 2:
        # no eps (as the reference): a row with any kept score has l >= 1 (its max adds
        # exp(0)); a row with none has acc = 0, and l = 1 keeps o = 0
        l = tl.maximum(l, 1.0)
    else:
        l = (l + eps).to(tl.float32)
    o = acc / l[:, None]
    tl.store(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :],
             o.to(O.dtype.element_ty), mask=rmask[:, None] & dmask[None, :])
    tl.store(L + pid_bh.to(tl.int64) * Tq + offs_m, m + tl.log2(l), mask=rmask)
