def schedulefree_adamw(w, g, lr, step, z, v):
    """Schedule-Free AdamW (Defazio et al. 2024), its training path: the parameter is the point y where gradients are taken.

    schedulefree's AdamWScheduleFree with betas 0.9, 0.999, eps 1e-8 (added to the
    bias-corrected sqrt(v)), weight decay 0.01 at y, no warm-up, r = 0 and a constant lr, so the
    averaging weight is c = 1 / step. z starts at the parameter (`first` is 1 at step 1):
    y <- (1 - c) y + c z + lr (0.9 (1 - c) - 1) n, z <- z - lr n. Evaluate at
    x = (1 - 0.9) z + 0.9 y, which this program does not produce.
    """
    first = 2.0 - step
    first = relu(first)
    z0 = w * first
    z = z + z0
    g2 = square(g)
    v = interp(g2, v, 0.999)
    vhat = bias_correct(v, 0.999, step)
    d = sqrt(vhat)
    d = d + 1e-08
    n = g / d
    decay = w * 0.01
    n = n + decay
    c = reciprocal(step)
    e = w - z
    e = e * c
    a = 1.0 - c
    a = a * 0.9
    a = 1.0 - a
    a = a * lr
    s = n * a
    update = e + s
    t = n * lr
    z = z - t
    return update, z, v
