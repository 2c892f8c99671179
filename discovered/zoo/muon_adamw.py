"""Muon (match_rms_adamw) on the hidden matrices, AdamW on embeddings, the head and vectors.

A role candidate, the split Muon is used with. Muon scales its update as torch.optim.Muon's
`adjust_lr_fn="match_rms_adamw"` does (Moonlight, Liu et al. 2025) so that both programs share one
lr and one weight decay: the lr multiplier a search or `eval` tries scales both, and AdamW's tuned
lr is a good lr for Muon too.
"""


def muon(w, g, lr, m):
    """torch.optim.Muon with `adjust_lr_fn="match_rms_adamw"`: Nesterov momentum 0.95, 5 Newton-Schulz
    steps with coefficients (3.4445, -4.775, 2.0315) and eps 1e-7, the update scaled by
    0.2 * max(rows, cols)**0.5, decoupled weight decay 0.01 (AdamW's) at the unscaled lr."""
    u = interp(g, m, 0.9025)
    m = interp(g, m, 0.95)
    o = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    r = rows(w)
    c = cols(w)
    big = maximum(r, c)
    scale = sqrt(big)
    scale = scale * 0.2
    update = o * scale
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m


def adamw(w, g, lr, step, m, v):
    """AdamW (torch.optim.AdamW defaults: betas 0.9, 0.999, eps 1e-8, decoupled weight decay 0.01)."""
    m = interp(g, m, 0.9)
    g2 = square(g)
    v = interp(g2, v, 0.999)
    mhat = bias_correct(m, 0.9, step)
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    update = mhat / d
    decay = w * 0.01
    update = update + decay
    update = update * lr
    return update, m, v


roles = {"hidden": muon, "default": adamw}
