def muon_rms(w, g, lr, m):
    """Muon with `adjust_lr_fn="match_rms_adamw"` (Moonlight, Liu et al. 2025): as `muon`, but the
    orthogonalized update is scaled by 0.2 * max(rows, cols)**0.5 so that its RMS matches AdamW's
    and AdamW's lr and weight decay carry over.
    """
    u = interp(g, m, 0.9025)
    m = interp(g, m, 0.95)
    o = orthogonalize(u, 3.4445, -4.775, 2.0315, 5.0, 1e-07)
    r = rows(w)
    c = cols(w)
    big = maximum(r, c)
    scale = sqrt(big)
    scale = scale * 0.2
    update = o * scale
    decay = w * 0.1
    update = update + decay
    update = update * lr
    return update, m
