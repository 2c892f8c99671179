def mars(w, g, lr, step, m, v, p):
    """MARS-AdamW, approximate form (Yuan et al. 2024): AdamW on a variance-reduced gradient built from the previous one.

    pytorch_optimizer's MARS with mars_type 'adamw' and optimize_1d=True (every parameter, vectors
    included, takes the MARS update): betas 0.95, 0.99, gamma 0.025, so
    c = g + 0.025 * 0.95 / 0.05 * (g - p), scaled down to norm 1 if longer; the denominator
    sqrt(v + 1e-15) + 1e-8 before its bias correction; no weight decay. `p` holds the previous
    gradient negated (0 at step 1).
    """
    diff = g + p
    c = diff * 0.475
    c = c + g
    cn = norm(c)
    cn = maximum(cn, 1.0)
    c = c / cn
    m = interp(c, m, 0.95)
    c2 = square(c)
    v = interp(c2, v, 0.99)
    d = v + 1e-15
    d = sqrt(d)
    d = d + 1e-08
    k = bias_correct(1.0, 0.99, step)
    k = sqrt(k)
    d = d * k
    mhat = bias_correct(m, 0.95, step)
    u = mhat / d
    update = u * lr
    p = -g
    return update, m, v, p
