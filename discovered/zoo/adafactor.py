def adafactor(w, g, lr, step, vr, vc):
    """Adafactor (Shazeer & Stern 2018) with an external learning rate: factored second moment.

    The second moment of an m x n matrix is kept as its row and column means (m + n numbers
    instead of m * n) and rebuilt as vr * vc / mean(vr); decay rate 1 - step ** -0.8 (no bias
    correction needed), eps1 = 1e-30 added to g * g, the update clipped to RMS <= 1. No first
    moment, relative step or parameter scaling: transformers' Adafactor with relative_step=False,
    scale_parameter=False, warmup_init=False. A parameter is seen as a matrix (shape[0], rest);
    a vector is one row, so its second moment is kept whole (vc) and vr is one number.
    """
    g2 = square(g)
    g2 = g2 + 1e-30
    b = power(step, -0.8)
    r = row_mean(g2)
    vr = interp(vr, r, b)
    c = col_mean(g2)
    vc = interp(vc, c, b)
    v = vr * vc
    s = mean(vr)
    v = v / s
    d = sqrt(v)
    u = g / d
    n = rms(u)
    n = maximum(n, 1.0)
    u = u / n
    update = u * lr
    return update, vr, vc
