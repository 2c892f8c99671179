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
