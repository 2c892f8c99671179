def adan(w, g, lr, step, m, n, v, p):
    """Adan (Xie et al. 2022): Nesterov momentum estimated from gradient differences.

    Adan's betas 0.98, 0.92, 0.99 (each the weight of the old value, as in the official code),
    eps 1e-8 added to the bias-corrected sqrt(v), proximal weight decay 0.02
    (w <- (w - lr * u) / (1 + lr * 0.02)). `p` holds the previous gradient negated, as
    pytorch_optimizer's Adan keeps it; at step 1 (`later` is 0) the difference is 0, as there.
    """
    later = step - 1.0
    later = minimum(later, 1.0)
    diff = g + p
    diff = diff * later
    m = interp(g, m, 0.98)
    n = interp(diff, n, 0.92)
    t = diff * 0.92
    t = t + g
    t2 = square(t)
    v = interp(t2, v, 0.99)
    vhat = bias_correct(v, 0.99, step)
    d = sqrt(vhat)
    d = d + 1e-08
    mhat = bias_correct(m, 0.98, step)
    nhat = bias_correct(n, 0.92, step)
    nhat = nhat * 0.92
    u = mhat + nhat
    u = u / d
    s = u * lr
    k = lr * 0.02
    dw = w * k
    s = s + dw
    k = k + 1.0
    update = s / k
    p = -g
    return update, m, n, v, p
