def adopt(w, g, lr, step, m, v):
    """ADOPT (Taniguchi et al. 2024): normalize the gradient by the second moment of earlier steps only, then take its momentum.

    torch-adopt's defaults: betas 0.9, 0.9999, eps 1e-6 as a floor on sqrt(v), the normalized
    gradient clipped to +-(step - 1) ** 0.25, no weight decay. Step 1 only sets v = g * g (its
    clip bound is 0, so m and the update stay 0); `first` is 1 at step 1 and 0 after.
    """
    d = sqrt(v)
    d = maximum(d, 1e-06)
    n = g / d
    t = step - 1.0
    c = power(t, 0.25)
    n = clip(n, c)
    m = interp(m, n, 0.1)
    update = m * lr
    g2 = square(g)
    first = 2.0 - step
    first = relu(first)
    a = maximum(first, 0.0001)
    v = interp(v, g2, a)
    return update, m, v
