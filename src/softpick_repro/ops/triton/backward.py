"""Backward kernels (SOFTPICK.md section 1, "Backward"), recomputing scores from the stored L.

With E = exp(S - L) (L = m + log(l), l the forward's final denominator) and Dr = rowsum(dO * O):
- softpick:     R = ReLU(E - exp(-L)),  dS = E * (step(S) * dP - sign(S) * Dr)   (sign(0) = 0)
- relu_softmax: R = ReLU(E - exp(-L)),  dS = E * step(S) * (dP - Dr)     (denominator has no |.|)
- rectified:    R = E * 1[S >= 0],      dS = R * (dP - Dr)               (softmax over kept entries)
- softmax:      R = E,                  dS = E * (dP - Dr)               (a sink only enters via L)
where step(x) = 1[x > 0] and dP = dO V^T. Masked scores are set to -inf, so E = R = dS = 0 there.
The m-dependence of the eps term (eps * exp(m)) is not differentiated: m is a constant, as in the
reference and the paper's kernel (an O(eps) relative term).
dK/dV per key block (looping over the query heads of its GQA group). dQ either in the same pass,
added atomically into an fp32 buffer (one recomputation of the scores instead of two: at head dim
64 the per-score ALU work, not the matmuls, bounds these kernels; the order of the fp32 additions,
so the last bits of dQ, varies between runs), or by a second kernel per query block (deterministic).
All scores are base 2 as in the forward; dS is w.r.t. the natural-scale scores.
TMA_DQ (constexpr): the atomic dQ as one TMA reduce-add of the tile through a tensor descriptor
instead of per-thread fp32 atomics (compiled kernels only: the interpreter has no TMA reduce).
"""
import triton
import triton.language as tl


@triton.jit
def _ds_and_weights(qk, E, expnegL, dP, Dr, ARM: tl.constexpr):
    """Return (R, dS) for a raw score tile qk (its sign is the sign of the scaled score), E = exp2(s - L);
    Dr, expnegL broadcast to qk."""
    if ARM == 0:
        # E - exp(-L) > 0 exactly when s > 0: one compare serves R and both branches of dS
        # (s > 0: E * (dP - Dr); s < 0: E * Dr; s == 0: 0)
        pos = qk > 0.0
        ED = E * Dr
        R = tl.where(pos, E - expnegL, 0.0)
        dS = tl.where(pos, E * dP - ED, tl.where(qk < 0.0, ED, 0.0))
    elif ARM == 1:
        pos = qk > 0.0
        R = tl.where(pos, E - expnegL, 0.0)
        dS = tl.where(pos, E * (dP - Dr), 0.0)
    elif ARM == 2:
        R = tl.where(qk >= 0.0, E, 0.0)
        dS = R * (dP - Dr)
    else:
        R = E
        dS = E * (dP - Dr)
    return R, dS


@triton.jit
def _dkdv_block(dk, dv, kb, vb, q_base, do_base, l_base, d_base, DQA, dqa_base, b, h, sqt, sdot, sdqat, offs_n,
                offs_d, lo, hi, Tq, off, scale2, ARM: tl.constexpr, MASK: tl.constexpr, ATOMIC_DQ: tl.constexpr,
                HEAD_DIM: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, DOT_PREC: tl.constexpr,
                TMA_DQ: tl.constexpr):
    """Accumulate dK, dV of one key block over query blocks [lo, hi), in key-major [BN, BM] tiles;
    with ATOMIC_DQ also add this key block's share of dQ (unscaled) into the fp32 buffer DQA."""
    dmask = offs_d < HEAD_DIM
    for start_m in range(lo, hi, BM):
        offs_m = start_m + tl.arange(0, BM)
        rmask = offs_m < Tq
        # rows past Tq load q = dO = 0 and L = Dr = 0: every term they add is 0
        qT = tl.load(q_base + offs_m[None, :] * sqt + offs_d[:, None],
                     mask=dmask[:, None] & rmask[None, :], other=0.0)
        do = tl.load(do_base + offs_m[:, None] * sdot + offs_d[None, :],
                     mask=rmask[:, None] & dmask[None, :], other=0.0)
        Lr = tl.load(l_base + offs_m, mask=rmask, other=0.0)
        Dr = tl.load(d_base + offs_m, mask=rmask, other=0.0)
        qkT = tl.dot(kb, qT, input_precision=DOT_PREC)
        if MASK:
            # -inf scores give E = 0, hence R = dS = 0, for every arm
            qkT = tl.where(offs_n[:, None] <= (off + offs_m)[None, :], qkT, float("-inf"))
        E = tl.exp2(qkT * scale2 - Lr[None, :])
        dPT = tl.dot(vb, tl.trans(do), input_precision=DOT_PREC)
        R, dS = _ds_and_weights(qkT, E, tl.exp2(-Lr)[None, :], dPT, Dr[None, :], ARM)
        dv = tl.dot(R.to(do.dtype), do, dv, input_precision=DOT_PREC)
        dS = dS.to(qT.dtype)
        dk = tl.dot(dS, tl.trans(qT), dk, input_precision=DOT_PREC)
        if ATOMIC_DQ:
            dq_part = tl.dot(tl.trans(dS), kb, input_precision=DOT_PREC)
            if TMA_DQ:  # rows past Tq fall outside the descriptor and are dropped
                DQA.atomic_add([b, start_m, h, 0], dq_part.reshape(1, BM, 1, BD))
            else:
                tl.atomic_add(dqa_base + offs_m[:, None] * sdqat + offs_d[None, :], dq_part,
                              mask=rmask[:, None] & dmask[None, :], sem="relaxed")
    return dk, dv


@triton.jit
def attn_bwd_dkdv_kernel(Q, K, V, DO, L, DELTA, DK, DV, DQA,
                         sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sdob, sdot, sdoh,
                         sdkb, sdkt, sdkh, sdvb, sdvt, sdvh, sdqab, sdqat, sdqah,
                         Tq, Tk, HQ, HKV, GROUP, scale, scale2,
                         ARM: tl.constexpr, CAUSAL: tl.constexpr, ATOMIC_DQ: tl.constexpr,
                         HEAD_DIM: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                         DOT_PREC: tl.constexpr, TMA_DQ: tl.constexpr):
    """Grid (cdiv(Tk, BN), B * HKV). Writes dK, dV [B, Tk, HKV, D], summed over the GQA group; with
    ATOMIC_DQ also accumulates the unscaled dQ into the fp32 buffer DQA [B, Tq, HQ, D] (zeroed by
    the caller), so that no second pass recomputes the scores for dQ; DQA is a tensor descriptor
    when TMA_DQ."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // HKV).to(tl.int64)
    hk = pid_bh % HKV
    start_n = pid_n * BN
    offs_n = start_n + tl.arange(0, BN)
    offs_d = tl.arange(0, BD)
    kmask = offs_n < Tk
    dmask = offs_d < HEAD_DIM
    off = Tk - Tq
    scale2 = tl.full([], scale2, tl.float32)  # fp64 under torch.compile's wrapper (forward.py)
    kb = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :],
                 mask=kmask[:, None] & dmask[None, :], other=0.0)
    vb = tl.load(V + b * svb + hk * svh + offs_n[:, None] * svt + offs_d[None, :],
                 mask=kmask[:, None] & dmask[None, :], other=0.0)
    dk = tl.zeros([BN, BD], dtype=tl.float32)
    dv = tl.zeros([BN, BD], dtype=tl.float32)

    q_end = tl.cdiv(Tq, BM) * BM
    if CAUSAL:
        # query row i sees key j iff j <= off + i: rows before q_lo see none of this block,
        # rows from q_mid on see all of it
        q_lo = tl.minimum(tl.maximum(start_n - off, 0) // BM * BM, q_end)
        q_mid = tl.cdiv(tl.maximum(start_n + BN - 1 - off, 0), BM) * BM
        q_mid = tl.maximum(tl.minimum(q_mid, q_end), q_lo)
    else:
        q_lo = 0
        q_mid = 0
    b32 = pid_bh // HKV  # descriptor offsets are int32
    for g in range(0, GROUP):
        h = hk * GROUP + g
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sdob + h * sdoh
        l_base = L + (b * HQ + h) * Tq
        d_base = DELTA + (b * HQ + h) * Tq
        if TMA_DQ:
            dqa_base = DQA  # unused
        else:
            dqa_base = DQA + b * sdqab + h * sdqah
        dk, dv = _dkdv_block(dk, dv, kb, vb, q_base, do_base, l_base, d_base, DQA, dqa_base, b32, h, sqt, sdot,
                             sdqat, offs_n, offs_d, q_lo, q_mid, Tq, off, scale2, ARM, True, ATOMIC_DQ,
                             HEAD_DIM, BD, BM, DOT_PREC, TMA_DQ)
        dk, dv = _dkdv_block(dk, dv, kb, vb, q_base, do_base, l_base, d_base, DQA, dqa_base, b32, h, sqt, sdot,
                             sdqat, offs_n, offs_d, q_mid, q_end, Tq, off, scale2, ARM, False, ATOMIC_DQ,
                             HEAD_DIM, BD, BM, DOT_PREC, TMA_DQ)
    omask = kmask[:, None] & dmask[None, :]
    tl.store(DK + b * sdkb + hk * sdkh + offs_n[:, None] * sdkt + offs_d[None, :],
             (dk * scale).to(DK.dtype.element_ty), mask=omask)
    tl.store(DV + b * sdvb + hk * sdvh + offs_n[:, None] * sdvt + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=omask)


@triton.jit
def _dq_block(dq, q, do, Lr, Dr, k_base, v_base, skt, svt, qpos, offs_d, lo, hi, Tk, scale2,
              ARM: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr,
              HEAD_DIM: tl.constexpr, BN: tl.constexpr, DOT_PREC: tl.constexpr):
    dmask = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BN):
        offs_n = start_n + tl.arange(0, BN)
        if MASK:
            kmask = offs_n < Tk
            kt = tl.load(k_base + offs_n[None, :] * skt + offs_d[:, None],
                         mask=dmask[:, None] & kmask[None, :], other=0.0)
            vt = tl.load(v_base + offs_n[None, :] * svt + offs_d[:, None],
                         mask=dmask[:, None] & kmask[None, :], other=0.0)
        else:
            kt = tl.load(k_base + offs_n[None, :] * skt + offs_d[:, None], mask=dmask[:, None], other=0.0)
            vt = tl.load(v_base + offs_n[None, :] * svt + offs_d[:, None], mask=dmask[:, None], other=0.0)
        qk = tl.dot(q, kt, input_precision=DOT_PREC)
        if MASK:
            valid = kmask[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= qpos[:, None])
            qk = tl.where(valid, qk, float("-inf"))
        E = tl.exp2(qk * scale2 - Lr[:, None])
        dP = tl.dot(do, vt, input_precision=DOT_PREC)
        R, dS = _ds_and_weights(qk, E, tl.exp2(-Lr)[:, None], dP, Dr[:, None], ARM)
        dq = tl.dot(dS.to(kt.dtype), tl.trans(kt), dq, input_precision=DOT_PREC)
    return dq


@triton.jit
def attn_bwd_dq_kernel(Q, K, V, DO, L, DELTA, DQ,
                       sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sdob, sdot, sdoh, sdqb, sdqt, sdqh,
                       Tq, Tk, HQ, GROUP, scale, scale2,
                       ARM: tl.constexpr, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, DOT_PREC: tl.constexpr):
    """Grid (cdiv(Tq, BM), B * HQ). Writes dQ [B, Tq, HQ, D]."""
    # causal: the last query blocks see the most keys, so they are scheduled first
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
    scale2 = tl.full([], scale2, tl.float32)  # fp64 under torch.compile's wrapper (forward.py)
    lmask = rmask[:, None] & dmask[None, :]
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :], mask=lmask, other=0.0)
    do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdot + offs_d[None, :], mask=lmask, other=0.0)
    Lr = tl.load(L + pid_bh.to(tl.int64) * Tq + offs_m, mask=rmask, other=0.0)
    Dr = tl.load(DELTA + pid_bh.to(tl.int64) * Tq + offs_m, mask=rmask, other=0.0)
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    dq = tl.zeros([BM, BD], dtype=tl.float32)
    if CAUSAL:
        lo_end = tl.minimum(tl.maximum(off + start_m + 1, 0) // BN * BN, Tk // BN * BN)
        hi = tl.minimum(tl.maximum(off + tl.minimum(start_m + BM, Tq), 0), Tk)
        hi = tl.maximum(hi, lo_end)
    else:
        lo_end = Tk // BN * BN
        hi = Tk
    dq = _dq_block(dq, q, do, Lr, Dr, k_base, v_base, skt, svt, qpos, offs_d, 0, lo_end, Tk, scale2,
                   ARM, False, CAUSAL, HEAD_DIM, BN, DOT_PREC)
    dq = _dq_block(dq, q, do, Lr, Dr, k_base, v_base, skt, svt, qpos, offs_d, lo_end, hi, Tk, scale2,
                   ARM, True, CAUSAL, HEAD_DIM, BN, DOT_PREC)
    tl.store(DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqt + offs_d[None, :],
             (dq * scale).to(DQ.dtype.element_ty), mask=lmask)


@triton.jit
def attn_bwd_delta_kernel(O, DO, DELTA, DQA, sob, sot, soh, sdob, sdot, sdoh, sdqab, sdqat, sdqah, Tq, HQ,
                          ZERO_DQA: tl.constexpr, HEAD_DIM: tl.constexpr, BD: tl.constexpr, BM: tl.constexpr):
    """Grid (cdiv(Tq, BM), B * HQ). DELTA [B, HQ, Tq] = rowsum(dO * O), products in fp32; with ZERO_DQA
    also zeroes the fp32 dQ buffer of the atomic path (the same rows, so no separate memset)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // HQ).to(tl.int64)
    h = pid_bh % HQ
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    mask = (offs_m < Tq)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o = tl.load(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdot + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + pid_bh.to(tl.int64) * Tq + offs_m, delta, mask=offs_m < Tq)
    if ZERO_DQA:
        tl.store(DQA + b * sdqab + h * sdqah + offs_m[:, None] * sdqat + offs_d[None, :],
                 tl.zeros([BM, BD], dtype=tl.float32), mask=mask)
